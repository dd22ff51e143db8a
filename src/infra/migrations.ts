import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg, { type Pool } from 'pg';
import { checkOut } from './transaction.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** Arbitrary constant shared by every replica: only one migrates at a time. */
const MIGRATION_LOCK_KEY = 7_310_402_115;

export interface Migration {
  readonly version: string;
  readonly sql: string;
  readonly checksum: string;
}

interface MigrationLogger {
  info(object: object, message: string): void;
}

export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => /^\d{4}_[\w-]+\.sql$/.test(file)).sort();
  return Promise.all(
    files.map(async (file) => {
      const sql = await readFile(path.join(dir, file), 'utf8');
      return {
        version: file.replace(/\.sql$/, ''),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    }),
  );
}

/** Applies pending migrations to the database at `url` over a connection of its own, closed afterwards. */
export async function migrateDatabase(url: string, logger: MigrationLogger): Promise<string[]> {
  const pool = new pg.Pool({ connectionString: url, max: 1, application_name: 'device-link-mqtt-migrate' });
  try {
    return await runMigrations(pool, logger);
  } finally {
    await pool.end();
  }
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/**
 * Applies pending migrations in order, each in its own transaction. Each
 * transaction takes a transaction-level advisory lock first, so replicas
 * starting together wait for each other instead of racing, and nothing
 * depends on the session: it works through a pooler in transaction mode
 * (PgBouncer) as well as directly. An applied migration whose file has
 * changed is an error: the schema would no longer match the files.
 */
export async function runMigrations(
  pool: Pool,
  logger: MigrationLogger,
  migrations?: readonly Migration[],
): Promise<string[]> {
  const all = migrations ?? (await readMigrations());
  const { client, release } = await checkOut(pool);
  const applied: string[] = [];
  try {
    for (;;) {
      let version: string | undefined;
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
        await client.query(`
          CREATE TABLE IF NOT EXISTS schema_migrations (
            version     text PRIMARY KEY,
            checksum    text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
          )`);
        const { rows } = await client.query<{ version: string; checksum: string }>('SELECT version, checksum FROM schema_migrations');
        const done = new Map(rows.map((row) => [row.version, row.checksum]));
        for (const migration of all) {
          const checksum = done.get(migration.version);
          if (checksum !== undefined && checksum !== migration.checksum) {
            throw new MigrationError(`migration ${migration.version} was changed after it was applied`);
          }
        }
        const next = all.find((migration) => !done.has(migration.version));
        if (!next) {
          await client.query('COMMIT');
          return applied;
        }
        version = next.version;
        await client.query(next.sql);
        await client.query('INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)', [next.version, next.checksum]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        if (error instanceof MigrationError || version === undefined) throw error;
        throw new MigrationError(`migration ${version} failed: ${(error as Error).message}`, { cause: error });
      }
      applied.push(version);
      logger.info({ version }, 'migration applied');
    }
  } finally {
    release();
  }
}
