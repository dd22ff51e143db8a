import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Actor } from '../../../src/lib/actor.js';
import { createCommandRepository } from '../../../src/modules/commands/command-repository.js';
import { wireCommands } from '../../../src/wiring/commands.js';
import { wireTopics } from '../../../src/wiring/topics.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { newCommand, seedQueuedCommands } from '../../helpers/commands.js';
import { createDeviceSeeder } from '../../helpers/devices.js';

const ROOT: Actor = { tokenId: 'root', tenantId: null, requestId: 'queue-heads-test', sourceIp: '127.0.0.1' };
const BLOCKED_DEVICES = 1000;
const PER_DEVICE = 10;

/** Shared buffers a statement touched (hit or read), from EXPLAIN (ANALYZE, BUFFERS). */
async function buffersOf(pool: pg.Pool, sql: string, values: unknown[]): Promise<number> {
  const { rows } = await pool.query<{ 'QUERY PLAN': Array<{ Plan: { 'Shared Hit Blocks': number; 'Shared Read Blocks': number } }> }>(
    `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`,
    values,
  );
  const plan = rows[0]?.['QUERY PLAN'][0]?.Plan;
  return (plan?.['Shared Hit Blocks'] ?? 0) + (plan?.['Shared Read Blocks'] ?? 0);
}

/** A new device of a new tenant. */
async function newDevice(ctx: TestContext): Promise<string> {
  const seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
  try {
    return await seeder.device(await seeder.tenant());
  } finally {
    await seeder.close();
  }
}

/** A count Postgres keeps of reads from `commands` (the column `read` of `sql`), with this connection's own counts flushed first. */
async function readsOfCommands(client: pg.PoolClient, sql: string): Promise<number> {
  // The flush happens once the connection is idle, after this statement.
  await client.query('SELECT pg_stat_force_next_flush()');
  await client.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await client.query<{ read: string }>(sql);
  return Number(rows[0]?.read ?? 0);
}

/** Rows of `commands` read by table scans so far. */
const rowsScanned = (client: pg.PoolClient) =>
  readsOfCommands(client, "SELECT seq_tup_read AS read FROM pg_stat_user_tables WHERE relname = 'commands'");

/** Entries read from the indexes of `commands` so far. */
const indexEntriesRead = (client: pg.PoolClient) =>
  readsOfCommands(client, "SELECT sum(idx_tup_read) AS read FROM pg_stat_user_indexes WHERE relname = 'commands'");

describe('the queue-head trigger on a connection older than the table', () => {
  let ctx: TestContext;
  let pool: pg.Pool;
  const commands = createCommandRepository();

  before(async () => {
    ctx = await createTestContext();
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 1 });
  });
  after(async () => {
    await pool.end();
    await ctx.close();
  });

  it('reads only the queue of the device it changes after the table has grown, without an ANALYZE in between', async () => {
    const device = await newDevice(ctx);
    const create = (db: pg.PoolClient) => commands.create(db, newCommand(device));
    const client = await pool.connect();
    try {
      // The connection's first creates meet a nearly empty table: PL/pgSQL
      // would keep the plan it made for that (a scan of the whole table).
      for (let i = 0; i < 8; i++) assert.equal((await create(client)).kind, 'created');
      await seedQueuedCommands(client, 'grown', 1000, 5);
      const before = await rowsScanned(client);
      for (let i = 0; i < 10; i++) assert.equal((await create(client)).kind, 'created');
      const scanned = (await rowsScanned(client)) - before;
      assert.ok(scanned < 1000, `10 creates read ${scanned} rows of the commands table by scanning it`);
    } finally {
      client.release();
    }
  });

  it("reads the queues of the devices it changes, not the index of every unfinished command, while the table's statistics lag behind", async () => {
    const client = await pool.connect();
    // Autovacuum would analyze the table at some point of the test; a busy table is often between two ANALYZEs.
    await client.query('ALTER TABLE commands SET (autovacuum_enabled = false)');
    try {
      const seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
      const tenant = await seeder.tenant().finally(() => seeder.close());
      const devices = Array.from({ length: 64 }, () => randomUUID());
      await client.query(`INSERT INTO devices (id, tenant_id, name) SELECT id, $2, 'd' FROM unnest($1::uuid[]) id`, [devices, tenant]);
      // Commands that went from queued to acked, as the dispatcher and EMQX's events move them: every
      // version left its entries in the partial indexes of unfinished commands until a vacuum.
      for (let round = 0; round < 8; round++) {
        await seedQueuedCommands(client, 'done', 1000, 1);
        await client.query(`UPDATE commands SET lease_until = now() WHERE tenant_id = 'done' AND state = 'queued'`);
        for (const [from, to] of [['queued', 'sent'], ['sent', 'delivered'], ['delivered', 'acked']]) {
          await client.query(`UPDATE commands SET state = $2, finished_at = CASE WHEN $2 = 'acked' THEN now() END WHERE tenant_id = 'done' AND state = $1`, [from, to]);
        }
      }
      const before = await indexEntriesRead(client);
      const outcomes = await commands.createMany(
        client,
        devices.map((deviceId) => newCommand(deviceId)),
      );
      assert.deepEqual(new Set(outcomes.map((outcome) => outcome.kind)), new Set(['created']));
      const read = (await indexEntriesRead(client)) - before;
      assert.ok(read < 2000, `64 creates read ${read} index entries of the commands table`);
    } finally {
      await client.query('ALTER TABLE commands RESET (autovacuum_enabled)');
      client.release();
    }
  });
});

/** Only the head of a device's queue is due: what a claim or a pending count reads does not grow with what waits. */
describe('the heads of device queues', () => {
  let ctx: TestContext;
  let pool: pg.Pool;
  const commands = createCommandRepository();

  before(async () => {
    ctx = await createTestContext();
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 4 });
  });
  after(async () => {
    await pool.end();
    await ctx.close();
  });

  const dueOf = async (device: string) =>
    (
      await pool.query<{ name: string; due: boolean }>(
        `SELECT name, send_after IS NOT NULL AS due FROM commands WHERE device_id = $1 AND state = 'queued' ORDER BY seq`,
        [device],
      )
    ).rows.map((row) => `${row.name}${row.due ? '*' : ''}`);

  /** A new device, and the commands feature wired as a replica wires it. */
  async function deviceAndReplica() {
    const device = await newDevice(ctx);
    const wiring = ctx.wiring();
    return { device, replica: wireCommands({ ...wiring, topics: wireTopics(wiring) }) };
  }

  it('only the oldest queued command of a device has a send_after, through creates, cancels, sends and lost sessions', async () => {
    const { device, replica } = await deviceAndReplica();
    const created = [];
    for (const name of ['a', 'b', 'c']) created.push((await replica.service.create(ROOT, device, { name }, null)).command);
    assert.deepEqual(await dueOf(device), ['a*', 'b', 'c']);
    // The head canceled: the next one is due.
    await replica.service.cancel(ROOT, device, created[0]!.id);
    assert.deepEqual(await dueOf(device), ['b*', 'c']);
    // Sent: the next one.
    const [claimed] = await commands.claim(pool, { leaseMs: 30_000, limit: 10, deviceId: device });
    assert.equal(claimed?.name, 'b');
    const at = new Date();
    await commands.transitionOne(pool, claimed.id, { event: 'published', reason: null, at, sets: { value: { sent_at: at } } });
    assert.deepEqual(await dueOf(device), ['c*']);
    // The session is lost: b is queued again, ahead of c.
    await commands.sessionLost(pool, device, new Date(at.getTime() + 1000), new Date());
    assert.deepEqual(await dueOf(device), ['b*', 'c']);
  });

  it('concurrent creates and sends of one device leave exactly one head', async () => {
    const { device, replica } = await deviceAndReplica();
    await replica.service.create(ROOT, device, { name: 'first' }, null);
    const sendAll = async () => {
      for (let i = 0; i < 10; i++) {
        const [head] = await commands.claim(pool, { leaseMs: 30_000, limit: 1, deviceId: device });
        if (head) await commands.transitionOne(pool, head.id, { event: 'published', reason: null, at: new Date() });
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const createAll = async () => {
      for (let i = 0; i < 20; i++) await replica.service.create(ROOT, device, { name: `n-${i}` }, null);
    };
    await Promise.all([sendAll(), createAll()]);
    const queue = await dueOf(device);
    assert.ok(queue.length >= 10, queue.join(' '));
    assert.ok(queue[0]?.endsWith('*'), queue.join(' '));
    assert.equal(queue.filter((entry) => entry.endsWith('*')).length, 1, queue.join(' '));
  });

  it(`a claim reads the due heads only, however many commands wait behind ${BLOCKED_DEVICES} offline devices' heads`, async () => {
    await seedQueuedCommands(pool, 'bulk', BLOCKED_DEVICES, PER_DEVICE);
    // Every head got a 202 (nobody subscribed) and waits for its device.
    await pool.query(
      `UPDATE commands SET send_after = now() + interval '5 minutes', last_error = 'no_subscriber'
        WHERE tenant_id = 'bulk' AND state = 'queued' AND send_after IS NOT NULL`,
    );
    const waiting = await pool.query<{ due: string }>(`SELECT count(*) FILTER (WHERE send_after IS NOT NULL) AS due FROM commands WHERE tenant_id = 'bulk'`);
    assert.equal(Number(waiting.rows[0]?.due), BLOCKED_DEVICES, 'one head per device');
    // The heads' old index entries gone, as autovacuum leaves them.
    await pool.query('VACUUM ANALYZE commands');
    const claimSql = `SELECT c.id FROM commands c
       WHERE c.state = 'queued' AND c.send_after <= now() AND (c.lease_until IS NULL OR c.lease_until <= now())
         AND NOT EXISTS (SELECT 1 FROM commands o WHERE o.device_id = c.device_id AND o.state = 'queued' AND o.seq < c.seq)
       ORDER BY c.send_after, c.seq LIMIT 32 FOR UPDATE SKIP LOCKED`;
    // Once to settle what the seeding left (hint bits, dead index entries), then measured.
    await pool.query(claimSql);
    const buffers = await buffersOf(pool, claimSql, []);
    assert.ok(buffers < 50, `the claim touched ${buffers} buffers`);
    const claimed = await commands.claim(pool, { leaseMs: 30_000, limit: 32 });
    assert.deepEqual(claimed.filter((command) => command.tenant_id === 'bulk'), [], 'nothing behind an offline head is due');
  });

  it("counts a device's unfinished commands without reading its finished ones", async () => {
    const device = '00000000-0000-4000-8000-00000000abcd';
    await pool.query(
      `INSERT INTO commands (id, tenant_id, device_id, name, state, source, request_digest, ttl_s, created_at, updated_at, expires_at, finished_at)
       SELECT gen_random_uuid(), 'bulk', $1, 'done', 'acked', 'api', 'x', 3600, now(), now(), now(), now() FROM generate_series(1, 5000)`,
      [device],
    );
    await pool.query('ANALYZE commands');
    assert.equal(await commands.countUnfinished(pool, device), 0);
    await commands.countUnfinished(pool, device);
    const buffers = await buffersOf(pool, 'SELECT count(*) FROM commands WHERE device_id = $1 AND finished_at IS NULL', [device]);
    assert.ok(buffers < 20, `the count touched ${buffers} buffers`);
  });
});
