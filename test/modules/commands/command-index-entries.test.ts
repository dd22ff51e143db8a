import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { seedQueuedCommands } from '../../helpers/commands.js';

const PAGE_BYTES = 8192;

/**
 * Every state change of a command writes a row version with an entry in each
 * index it qualifies for (migration 0013): the indexes hold what queries
 * need, and no more.
 */
describe('the index entries of commands', () => {
  let ctx: TestContext;
  let pool: pg.Pool;

  before(async () => {
    ctx = await createTestContext();
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 2 });
  });
  after(async () => {
    await pool.end();
    await ctx.close();
  });

  const bytesOf = async (index: string) =>
    Number((await pool.query<{ bytes: string }>('SELECT pg_relation_size($1::regclass) AS bytes', [index])).rows[0]?.bytes);

  it('keeps commands without an idempotency key out of the idempotency index, which still refuses a key used twice', async () => {
    await seedQueuedCommands(pool, 'keyless', 200, 10);
    // 2,000 entries of (tenant, device, key) would take several pages; an index without them is its metapage (and a root).
    assert.ok((await bytesOf('commands_idempotency_key')) <= 2 * PAGE_BYTES, 'commands without a key have entries in the idempotency index');
    assert.ok((await bytesOf('commands_pkey')) > 4 * PAGE_BYTES, 'the seeded commands are indexed by id');

    const device = randomUUID();
    const insert = () =>
      pool.query(
        `INSERT INTO commands (id, tenant_id, device_id, name, state, source, idempotency_key, request_digest, ttl_s, send_after, created_at, updated_at, expires_at)
         VALUES (gen_random_uuid(), 'keyed', $1, 'n', 'queued', 'api', 'key-1', 'x', 3600, now(), now(), now(), now() + interval '1 hour')`,
        [device],
      );
    await insert();
    await assert.rejects(insert(), (error: { code?: string; constraint?: string }) => error.code === '23505' && error.constraint === 'commands_idempotency_key');
  });

  it('has no index on seq alone, and one index of unfinished commands, by device and state', async () => {
    const { rows: seqOnly } = await pool.query<{ name: string }>(
      `SELECT i.indexrelid::regclass::text AS name
         FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'commands'::regclass AND i.indnatts = 1 AND a.attname = 'seq'`,
    );
    assert.deepEqual(seqOnly, []);
    const { rows: unfinished } = await pool.query<{ indexname: string; indexdef: string }>(
      `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'commands' AND indexdef LIKE '%WHERE (finished_at IS NULL)'`,
    );
    assert.deepEqual(
      unfinished.map((row) => row.indexname),
      ['commands_device_unfinished'],
    );
    assert.match(unfinished[0]!.indexdef, /\(device_id, state\)/);
  });
});
