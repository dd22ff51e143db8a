import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTopicNames } from '../../../src/lib/topics.js';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createCommand, eventsTo, isForwardPath, statesByCommand, waitForCommand, type CommandBody } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { consumeRecords } from '../../helpers/kafka.js';
import { createPrivateKafka, type PrivateKafka } from '../../helpers/private-kafka.js';
import { waitFor } from '../../helpers/wait.js';

const metric = async (app: FastifyInstance, pattern: RegExp) => Number(pattern.exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? NaN);

describe('commands through a Kafka outage', () => {
  let kafka: PrivateKafka;
  let emqx: EmqxSim;
  let ctx: TestContext;
  let app: FastifyInstance;
  let root: AdminClient;
  let device: string;

  before(async () => {
    kafka = await createPrivateKafka();
    await kafka.start();
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), KAFKA_BROKERS: kafka.brokers, COMMANDS_POLL_INTERVAL_MS: '200' });
    app = await ctx.app();
    emqx.sendEventsTo(eventsTo(app));
    root = adminClient(app);
    assert.equal((await root.post('/v1/tenants', { id: 'outage', name: 'Outage' })).statusCode, 201);
    device = (await root.post('/v1/tenants/outage/devices', { name: 'pump' })).json<{ id: string }>().id;
    await emqx.subscribe(device, `devices/${device}/commands`);
  });
  after(async () => {
    await ctx?.close();
    await emqx?.close();
    await kafka?.destroy();
  });

  it('keeps sending commands while Kafka is down; their status records wait in Postgres and reach Kafka once each when it is back', async () => {
    const send = async (name: string) => {
      const response = await createCommand(app, device, { name });
      assert.equal(response.statusCode, 202, response.body);
      return response.json<CommandBody>();
    };
    const before = await send('before');
    await waitForCommand(root, device, before.id, 'acked');
    await waitFor(async () => (await metric(app, /^devicelink_commands_status_outbox_depth (\d+)$/m)) === 0, 10_000);

    await kafka.stop();
    const during: CommandBody[] = [];
    for (let i = 0; i < 5; i++) during.push(await send(`during-${i}`));
    for (const command of during) await waitForCommand(root, device, command.id, 'acked');
    assert.ok((await metric(app, /^devicelink_commands_status_outbox_depth (\d+)$/m)) >= during.length * 2, 'the changes wait in the outbox');

    await kafka.start();
    await waitFor(async () => (await metric(app, /^devicelink_commands_status_outbox_depth (\d+)$/m)) === 0, 60_000);
    const transitions = [...(await app.inject({ method: 'GET', url: '/metrics' })).body.matchAll(/^devicelink_commands_transitions_total\{state="[a-z_]+"\} (\d+)$/gm)].reduce(
      (sum, match) => sum + Number(match[1]),
      0,
    );
    const topic = createTopicNames(ctx.config.kafka.topicPrefix).commandStatus('outage');
    const records = (await consumeRecords([topic], transitions, { brokers: kafka.brokers, settleMs: 2000, timeoutMs: 30_000 })).map(
      (record) => JSON.parse(record.value ?? '{}') as { command_id: string; state: string },
    );
    assert.equal(records.length, transitions, `${records.length} records for ${transitions} changes`);
    const paths = statesByCommand(records);
    assert.equal(paths.size, 1 + during.length);
    for (const [id, states] of paths) assert.ok(isForwardPath(states, 'acked'), `${id}: ${states.join(' → ')}`);
    assert.ok((await metric(app, /^devicelink_commands_status_produce_failures_total (\d+)$/m)) > 0, 'the failed produces were counted');
  });
});
