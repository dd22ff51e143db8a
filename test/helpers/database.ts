import pg from 'pg';
import { readMigrations, runMigrations } from '../../src/infra/migrations.js';
import { TEST_POSTGRES_ADMIN_URL } from './env.js';

const TEMPLATE_LOCK_KEY = 7_310_402_116;

function databaseUrl(name: string): string {
  const url = new URL(TEST_POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * Ensures a template database migrated to the current migration files exists.
 * Its name carries a digest of the files, so a changed migration gets a fresh template.
 */
async function ensureTemplate(admin: pg.Client): Promise<string> {
  const migrations = await readMigrations();
  const digest = migrations.map((m) => m.checksum.slice(0, 6)).join('').slice(-24);
  const name = `dlm_template_${digest}`;
  const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  if (rowCount) return name;
  await admin.query(`CREATE DATABASE ${name}`);
  const pool = new pg.Pool({ connectionString: databaseUrl(name), max: 1 });
  try {
    await runMigrations(pool, { info: () => undefined }, migrations);
  } catch (error) {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    throw error;
  }
  await pool.end();
  return name;
}

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

/**
 * Drops a test's database once the connections its pools are still closing
 * have gone (up to 3 s), and only then by force: terminating a connection a
 * client has not finished with makes that client emit an error after its test
 * ended, which fails the file.
 */
async function dropDatabase(name: string): Promise<void> {
  await withAdmin(async (admin) => {
    const deadline = Date.now() + 3000;
    for (;;) {
      const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name]);
      if (rows[0]?.n === 0 || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
}

/** A fresh, migrated database of the caller's own, cloned from the template. */
export async function createTestDatabase(tag: string): Promise<TestDatabase> {
  const name = `dlm_t_${tag}`;
  await withAdmin(async (admin) => {
    // Serializes template creation and cloning: CREATE DATABASE ... TEMPLATE
    // fails while another session is connected to the template.
    await admin.query('SELECT pg_advisory_lock($1)', [TEMPLATE_LOCK_KEY]);
    try {
      const template = await ensureTemplate(admin);
      await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    } finally {
      await admin.query('SELECT pg_advisory_unlock($1)', [TEMPLATE_LOCK_KEY]);
    }
  });
  return {
    name,
    url: databaseUrl(name),
    drop: () => dropDatabase(name),
  };
}

/** An empty database (no migrations), for tests of the migration runner itself. */
export async function createEmptyDatabase(tag: string): Promise<TestDatabase> {
  const name = `dlm_e_${tag}`;
  await withAdmin((admin) => admin.query(`CREATE DATABASE ${name}`));
  return {
    name,
    url: databaseUrl(name),
    drop: () => dropDatabase(name),
  };
}
