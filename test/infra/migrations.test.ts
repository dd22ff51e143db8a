import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { MigrationError, readMigrations, runMigrations, type Migration } from '../../src/infra/migrations.js';
import { createEmptyDatabase, type TestDatabase } from '../helpers/database.js';
import { uniqueTag } from '../helpers/env.js';

const silent = { info: () => undefined };

describe('migrations', () => {
  let db: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    db = await createEmptyDatabase(uniqueTag());
    pool = new pg.Pool({ connectionString: db.url, max: 4 });
  });
  after(async () => {
    await pool.end();
    await db.drop();
  });

  it('two concurrent migrators apply each migration exactly once', async () => {
    const all = await readMigrations();
    const pools = [new pg.Pool({ connectionString: db.url, max: 1 }), new pg.Pool({ connectionString: db.url, max: 1 })];
    try {
      const [first, second] = await Promise.all(pools.map((p) => runMigrations(p, silent, all)));
      assert.deepEqual([...(first ?? []), ...(second ?? [])].sort(), all.map((m) => m.version));
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
    const { rows } = await pool.query('SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(rows.map((row) => row.version), all.map((m) => m.version));
    const tables = await pool.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
    );
    for (const table of ['admin_tokens', 'audit_log', 'device_keys', 'device_psk', 'devices', 'tenants']) {
      assert.ok(tables.rows.some((row) => row.table_name === table), `table ${table} exists`);
    }
  });

  it('applying again is a no-op', async () => {
    assert.deepEqual(await runMigrations(pool, silent), []);
  });

  it('a failing migration rolls back entirely and is reported', async () => {
    const broken: Migration[] = [
      ...(await readMigrations()),
      { version: '9998_half', sql: 'CREATE TABLE half_done (id int PRIMARY KEY); SELECT nope FROM nowhere;', checksum: 'x' },
    ];
    await assert.rejects(runMigrations(pool, silent, broken), (error: unknown) => {
      assert.ok(error instanceof MigrationError);
      assert.match(error.message, /9998_half failed/);
      return true;
    });
    const { rowCount } = await pool.query(`SELECT 1 FROM information_schema.tables WHERE table_name = 'half_done'`);
    assert.equal(rowCount, 0);
    const applied = await pool.query(`SELECT 1 FROM schema_migrations WHERE version = '9998_half'`);
    assert.equal(applied.rowCount, 0);
  });

  it('refuses to run when an applied migration file was changed', async () => {
    const changed = (await readMigrations()).map((m, index) => (index === 0 ? { ...m, checksum: 'edited' } : m));
    await assert.rejects(runMigrations(pool, silent, changed), /was changed after it was applied/);
  });

  it('npm run db:migrate exits non-zero when it cannot migrate', async () => {
    const run = promisify(execFile);
    await assert.rejects(
      run('npx', ['tsx', 'src/cli/migrate.ts'], {
        env: { ...process.env, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' },
      }),
      (error: { code?: number; stderr?: string }) => {
        assert.equal(error.code, 1);
        assert.match(error.stderr ?? '', /migration failed/);
        return true;
      },
    );
    const ok = await run('npx', ['tsx', 'src/cli/migrate.ts'], { env: { ...process.env, DATABASE_URL: db.url } });
    assert.match(ok.stderr, /database is up to date/);
  });
});
