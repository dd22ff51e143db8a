import pg from 'pg';
import { readSecretVariable } from '../config.js';
import { runMigrations } from '../infra/migrations.js';

/** `npm run db:migrate`: applies pending migrations to DATABASE_URL (or DATABASE_URL_FILE) and exits non-zero on failure. */
async function migrate(): Promise<void> {
  const url = readSecretVariable('DATABASE_URL');
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    const applied = await runMigrations(pool, {
      info: (object, message) => console.error(message, JSON.stringify(object)),
    });
    console.error(applied.length === 0 ? 'database is up to date' : `applied ${applied.length} migration(s)`);
  } finally {
    await pool.end();
  }
}

migrate().catch((error: unknown) => {
  console.error('migration failed:', error instanceof Error ? error.message : error);
  process.exit(1);
});
