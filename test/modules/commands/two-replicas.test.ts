import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { createTopicNames } from '../../../src/lib/topics.js';
import { createCommand, eventsTo, isForwardPath, statesByCommand, statusRecords } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder } from '../../helpers/devices.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { produceRecords } from '../../helpers/kafka.js';
import { waitFor } from '../../helpers/wait.js';

const DEVICES = 100;
const PER_DEVICE = 10;
const TOTAL = DEVICES * PER_DEVICE;

/** The sum of a counter's series over every label set, read from /metrics. */
async function counterByLabel(app: FastifyInstance, name: string): Promise<Map<string, number>> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const values = new Map<string, number>();
  for (const match of text.matchAll(new RegExp(`^${name}\\{state="([a-z_]+)"\\} (\\d+)$`, 'gm'))) {
    values.set(match[1] as string, Number(match[2]));
  }
  return values;
}

/**
 * Two replicas sharing Postgres, Redis and Kafka, one EMQX sending its events
 * to either of them, every event twice, in random order, half of them before
 * the publish call that caused them has returned.
 */
describe('commands on two replicas', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let first: FastifyInstance;
  let second: FastifyInstance;
  let pool: pg.Pool;
  let devices: string[];

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_FROM_KAFKA: 'true', COMMANDS_POLL_INTERVAL_MS: '200' });
    const seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    try {
      await seeder.tenant('fleet');
      devices = [];
      for (let i = 0; i < DEVICES; i++) devices.push(await seeder.device('fleet'));
    } finally {
      await seeder.close();
    }
    [first, second] = await Promise.all([ctx.app(), ctx.app()]);
    emqx.sendEventsTo(eventsTo(first, second));
    emqx.deliveryPlan({ beforeAnswer: 'sometimes', repeat: true, shuffle: true });
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 2 });
  });
  after(async () => {
    await pool?.end();
    await ctx.close();
    await emqx.close();
  });

  it(`${TOTAL} commands over REST and Kafka to ${DEVICES} devices each end in exactly one final state, with one status record per transition`, async () => {
    const topic = (device: string) => `devices/${device}/commands`;
    // 70 devices online, 20 offline with a persistent session (EMQX answers 200 and holds
    // the commands), 10 not subscribed at all (202: the commands wait for the subscription).
    for (const [index, device] of devices.entries()) {
      if (index < 90) await emqx.subscribe(device, topic(device), { persistent: index >= 70 });
      if (index >= 70 && index < 90) emqx.disconnect(device);
    }
    emqx.failNextPublishes(...Array<number>(20).fill(503));

    // Half over REST, to either replica, 16 requests in flight; half from Kafka, a quarter of those written twice.
    const restCreates: Array<() => Promise<void>> = [];
    const kafkaRecords: Array<{ key: string; value: string }> = [];
    for (let n = 0; n < PER_DEVICE; n++) {
      for (const [index, device] of devices.entries()) {
        if ((n + index) % 2 === 0) {
          const app = (n + index) % 4 === 0 ? first : second;
          restCreates.push(async () => {
            const response = await createCommand(app, device, { name: `rest-${n}`, params: { n } });
            assert.equal(response.statusCode, 202, response.body);
          });
        } else {
          const record = { key: device, value: JSON.stringify({ command_id: `kafka-${index}-${n}`, device_id: device, name: `kafka-${n}`, params: { n } }) };
          kafkaRecords.push(record);
          if (n % 4 === 1) kafkaRecords.push(record);
        }
      }
    }
    const client = async () => {
      for (let create = restCreates.shift(); create; create = restCreates.shift()) await create();
    };
    await Promise.all([...Array.from({ length: 16 }, client), produceRecords(createTopicNames(ctx.config.kafka.topicPrefix).commandRequests('fleet'), kafkaRecords)]);

    const count = async (where = 'TRUE') => Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM commands WHERE ${where}`)).rows[0]?.n);
    await waitFor(async () => (await count()) === TOTAL, 60_000);

    // The offline devices come back: persistent sessions reconnect, the others subscribe.
    for (const device of devices.slice(70)) await emqx.subscribe(device, topic(device));
    await waitFor(async () => (await count("state = 'acked'")) === TOTAL, 120_000);
    await emqx.settle();

    // Exactly one final state each, reached once.
    assert.equal(await count("finished_at IS NOT NULL AND state = 'acked'"), TOTAL);
    assert.equal(await count('attempts < 1'), 0);

    // Each device's commands were handed to EMQX in creation order.
    const created = (await pool.query<{ id: string; device_id: string }>('SELECT id, device_id FROM commands ORDER BY seq')).rows;
    const handed = emqx.published
      .filter((p) => p.status === 200)
      .map((p) => ({ device: p.topic.split('/')[1], id: (JSON.parse(String(p.body.payload)) as { command_id: string }).command_id }));
    for (const device of devices) {
      const expected = created.filter((row) => row.device_id === device).map((row) => row.id);
      assert.deepEqual(handed.filter((h) => h.device === device).map((h) => h.id), expected, `order of ${device}`);
    }

    // Every transition either replica made is on commands.status.fleet exactly once.
    await waitFor(async () => Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM command_status_outbox')).rows[0]?.n) === 0, 30_000);
    const made = new Map<string, number>();
    for (const app of [first, second]) {
      for (const [state, value] of await counterByLabel(app, 'devicelink_commands_transitions_total')) made.set(state, (made.get(state) ?? 0) + value);
    }
    const expectedRecords = [...made.values()].reduce((sum, value) => sum + value, 0);
    assert.equal(made.get('queued'), TOTAL);
    assert.equal(made.get('acked'), TOTAL);
    const records = await statusRecords(ctx.config.kafka.topicPrefix, 'fleet', expectedRecords, { settleMs: 3000, timeoutMs: 60_000 });
    assert.equal(records.length, expectedRecords, `${records.length} status records for ${expectedRecords} transitions`);
    const byCommand = statesByCommand(records);
    assert.equal(byCommand.size, TOTAL);
    for (const [id, states] of byCommand) assert.ok(isForwardPath(states, 'acked'), `${id}: ${states.join(' → ')}`);
    for (const [state, value] of made) assert.equal(records.filter((r) => r.state === state).length, value, `records of state ${state}`);
    for (const record of records) assert.equal(record.key, record.device_id);
  });
});
