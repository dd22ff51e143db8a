import { readSecretVariable } from '../config.js';
import { migrateDatabase } from '../infra/migrations.js';

/** `npm run db:migrate`: applies pending migrations to DATABASE_URL (or DATABASE_URL_FILE) and exits non-zero on failure. */
async function migrate(): Promise<void> {
  const applied = await migrateDatabase(readSecretVariable('DATABASE_URL'), {
    info: (object, message) => console.error(message, JSON.stringify(object)),
  });
  console.error(applied.length === 0 ? 'database is up to date' : `applied ${applied.length} migration(s)`);
}

migrate().catch((error: unknown) => {
  console.error('migration failed:', error instanceof Error ? error.message : error);
  process.exit(1);
});
