import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Actor } from '../../../src/lib/actor.js';
import { wireCommands } from '../../../src/wiring/commands.js';
import { wireTopics } from '../../../src/wiring/topics.js';
import { statesByCommand, statusRecords } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder } from '../../helpers/devices.js';

const ROOT: Actor = { tokenId: 'root', tenantId: null, requestId: 'sweeper-test', sourceIp: '127.0.0.1' };
const DEVICES = 20;
const PER_DEVICE = 30;

/** Two replicas' command features wired as the app wires them, on one clock the test moves. */
describe('command expiry and retention on two replicas', () => {
  let ctx: TestContext;
  let pool: pg.Pool;
  let now = Date.parse('2026-11-02T08:00:00.000Z');
  const clock = () => now;
  const replica = () => {
    const wiring = ctx.wiring({ clock });
    return wireCommands({ ...wiring, topics: wireTopics(wiring) });
  };

  before(async () => {
    ctx = await createTestContext({ COMMANDS_RETENTION_DAYS: '30' });
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 1 });
  });
  after(async () => {
    await pool.end();
    await ctx.close();
  });

  it('expires each overdue command once however many replicas sweep at once, then deletes it after the retention period', async () => {
    const seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    const devices: string[] = [];
    try {
      const tenant = await seeder.tenant('sweep');
      for (let i = 0; i < DEVICES; i++) devices.push(await seeder.device(tenant));
    } finally {
      await seeder.close();
    }
    const [first, second] = [replica(), replica()];
    // Never sent (the replicas' dispatchers are not running): each expires as not_sent.
    for (const device of devices) {
      for (let n = 0; n < PER_DEVICE; n++) await first.service.create(ROOT, device, { name: `job-${n}`, ttl_s: 10 + (n % 5) }, null);
    }
    const total = DEVICES * PER_DEVICE;
    now += 9_000;
    assert.deepEqual(await first.sweep(), { expired: 0, timedOut: 0, deleted: 0 }, 'nothing is due yet');

    now += 6_000;
    const sweeps = await Promise.all([first, second, first, second].map((r) => r.sweep()));
    assert.equal(sweeps.reduce((sum, sweep) => sum + sweep.expired, 0), total, 'each command expired by exactly one sweep');
    const states = (await pool.query<{ state: string; reason: string; n: string }>('SELECT state, reason, count(*) AS n FROM commands GROUP BY 1, 2')).rows;
    assert.deepEqual(states.map((row) => [row.state, row.reason, Number(row.n)]), [['expired', 'not_sent', total]]);

    await Promise.all([first.drainStatus(), second.drainStatus()]);
    const records = await statusRecords(ctx.config.kafka.topicPrefix, 'sweep', 2 * total, { settleMs: 2000, timeoutMs: 30_000 });
    assert.equal(records.length, 2 * total);
    for (const [id, path] of statesByCommand(records)) assert.deepEqual(path, ['queued', 'expired'], id);

    // Kept for 30 days after they finished, then deleted in batches.
    now += 29 * 86_400_000;
    assert.equal((await first.sweep()).deleted, 0);
    now += 2 * 86_400_000;
    const deleted = await Promise.all([first.sweep(), second.sweep()]);
    assert.equal(deleted.reduce((sum, sweep) => sum + sweep.deleted, 0), total);
    assert.equal(Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM commands')).rows[0]?.n), 0);
  });
});
