import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Registry } from 'prom-client';
import type { Actor } from '../../../src/lib/actor.js';
import { createCommandMetrics } from '../../../src/modules/commands/command-metrics.js';
import { createCommandRepository } from '../../../src/modules/commands/command-repository.js';
import { createCommandStatusOutbox } from '../../../src/modules/commands/command-status-outbox.js';
import { wireCommands } from '../../../src/wiring/commands.js';
import { wireTopics } from '../../../src/wiring/topics.js';
import { statusRecords } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder } from '../../helpers/devices.js';

const ROOT: Actor = { tokenId: 'root', tenantId: null, requestId: 'status-outbox-test', sourceIp: '127.0.0.1' };
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** The status outbox against real Kafka, one tenant's topic refusing records. */
describe('the command status outbox', () => {
  let ctx: TestContext;
  let pool: pg.Pool;

  before(async () => {
    ctx = await createTestContext();
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 1 });
  });
  after(async () => {
    await pool.end();
    await ctx.close();
  });

  it("a tenant whose topic fails does not hold the other tenants' records", async () => {
    const seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    const wiring = ctx.wiring();
    const topics = wireTopics(wiring);
    const replica = wireCommands({ ...wiring, topics });
    let healthy: string;
    let broken: string;
    try {
      healthy = await seeder.tenant();
      broken = await seeder.tenant();
      for (const tenant of [broken, healthy]) {
        const device = await seeder.device(tenant);
        for (let n = 0; n < 3; n++) await replica.service.create(ROOT, device, { name: `job-${n}` }, null);
      }
    } finally {
      await seeder.close();
    }
    let failing = true;
    const outbox = createCommandStatusOutbox({
      pool: wiring.infra.postgres.pool,
      commands: createCommandRepository(),
      produce: async (batches, timeoutMs) => {
        if (failing && batches.some((batch) => batch.topic === topics.names.commandStatus(broken))) throw new Error('topic authorization failed');
        return wiring.infra.kafka.produce(batches, timeoutMs);
      },
      topics: topics.names,
      ensureTenant: topics.provisioner.ensureTenantOnce,
      metrics: createCommandMetrics(new Registry(), async () => ({ unfinished: {}, outbox: 0 })),
      log: quiet,
      options: { intervalMs: 60_000, batch: 500, produceTimeoutMs: 5000 },
    });
    assert.equal(await outbox.drain(), 3, "the healthy tenant's records are produced");
    const left = await pool.query<{ tenant_id: string }>('SELECT DISTINCT tenant_id FROM command_status_outbox');
    assert.deepEqual(left.rows.map((row) => row.tenant_id), [broken]);
    assert.equal((await statusRecords(ctx.config.kafka.topicPrefix, healthy, 3)).length, 3);
    failing = false;
    assert.equal(await outbox.drain(), 3, 'and the failed ones once their topic works');
    assert.deepEqual((await statusRecords(ctx.config.kafka.topicPrefix, broken, 3)).map((record) => record.name), ['job-0', 'job-1', 'job-2']);
  });
});
