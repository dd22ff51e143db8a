import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTopicNames } from '../../../src/lib/topics.js';
import type { CommandDeadLetter } from '../../../src/modules/commands/command-requests.js';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { eventsTo, isForwardPath, outboxDrained, statusRecords, waitForCommand, type CommandBody } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { createDeviceSeeder } from '../../helpers/devices.js';
import { consumeRecords, produceRecords } from '../../helpers/kafka.js';
import { waitFor } from '../../helpers/wait.js';

/**
 * Command requests other services write to commands.{tenant}: consumed by a
 * group the replicas share, each record a command (its command_id the
 * idempotency key), or a dead letter with the reason.
 */
describe('command requests from Kafka', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let app: FastifyInstance;
  let root: AdminClient;
  let device: string;
  let foreignDevice: string;
  const topics = () => createTopicNames(ctx.config.kafka.topicPrefix);

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_FROM_KAFKA: 'true', COMMANDS_POLL_INTERVAL_MS: '100', COMMANDS_MAX_PENDING_PER_DEVICE: '3' });
    app = await ctx.app();
    emqx.sendEventsTo(eventsTo(app));
    root = adminClient(app);
    // Created after the app started: their request topics are consumed from their creation on.
    assert.equal((await root.post('/v1/tenants', { id: 'acme', name: 'Acme' })).statusCode, 201);
    assert.equal((await root.post('/v1/tenants', { id: 'globex', name: 'Globex' })).statusCode, 201);
    device = (await root.post('/v1/tenants/acme/devices', { name: 'valve' })).json<{ id: string }>().id;
    foreignDevice = (await root.post('/v1/tenants/globex/devices', { name: 'valve' })).json<{ id: string }>().id;
    await emqx.subscribe(device, `devices/${device}/commands`);
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  const listed = async (deviceId: string) => (await root.get(`/v1/devices/${deviceId}/commands?limit=500`)).json<{ items: CommandBody[] }>().items;

  it('turns a request into a command sent to the device, once however often the record is delivered', async () => {
    const request = { command_id: 'order-1', device_id: device, name: 'open', params: { percent: 40 }, ttl_s: 300 };
    await produceRecords(topics().commandRequests('acme'), [
      { key: device, value: JSON.stringify(request) },
      // Redelivered, or written twice by its sender: the same command.
      { key: device, value: JSON.stringify(request) },
    ]);
    await waitFor(async () => (await listed(device)).length === 1, 20_000);
    const [command] = await listed(device);
    assert.ok(command);
    assert.equal(command.source, 'kafka');
    assert.equal(command.idempotency_key, 'order-1');
    assert.deepEqual(command.params, { percent: 40 });
    await waitForCommand(root, device, command.id, 'acked');
    await outboxDrained(app);
    const records = await statusRecords(ctx.config.kafka.topicPrefix, 'acme', 2);
    const mine = records.filter((r) => r.command_id === command.id);
    // Steps are skipped when delivery events come before EMQX's answer, or the ack before the delivery.
    assert.ok(isForwardPath(mine.map((r) => r.state), 'acked'), mine.map((r) => r.state).join(' → '));
    assert.ok(mine.every((r) => r.idempotency_key === 'order-1'), 'the requester finds its command by its command_id');
  });

  it('dead-letters what can never be a command, with the reason, and keeps consuming', async () => {
    const unknownDevice = randomUUID();
    const poison: Array<{ key?: string | null; value: string | Buffer }> = [
      { key: device, value: Buffer.from([0xff, 0xfe, 0x00]) },
      { key: device, value: JSON.stringify({ device_id: device, name: 'bad name!' }) },
      { key: device, value: JSON.stringify({ device_id: device, name: 'ok', ttl_s: 5 }) },
      { key: foreignDevice, value: JSON.stringify({ device_id: foreignDevice, name: 'intrude' }) },
      { key: unknownDevice, value: JSON.stringify({ device_id: unknownDevice, name: 'ghost' }) },
      { key: foreignDevice, value: JSON.stringify({ device_id: device, name: 'wrong-key' }) },
      { key: device, value: JSON.stringify({ command_id: 'order-1', device_id: device, name: 'open', params: { percent: 90 } }) },
      { key: device, value: JSON.stringify({ device_id: device, name: 'ok', response_timeout_s: 30 }) },
    ];
    await produceRecords(topics().commandRequests('acme'), [...poison, { key: device, value: JSON.stringify({ device_id: device, name: 'after-poison' }) }]);
    await waitFor(async () => (await listed(device)).some((c) => c.name === 'after-poison'), 20_000);

    // Keyed by device, so spread over partitions: compared without their order.
    const letters = (await consumeRecords([topics().commandDlq('acme')], poison.length, { settleMs: 1000 })).map(
      (r) => JSON.parse(r.value ?? '{}') as CommandDeadLetter,
    );
    assert.deepEqual(
      letters.map((l) => l.reason).sort(),
      ['idempotency_conflict', 'invalid_json', 'invalid_request', 'invalid_request', 'invalid_request', 'key_mismatch', 'tenant_mismatch', 'unknown_device'],
    );
    const details = letters.map((l) => l.detail);
    assert.ok(details.some((d) => /^name: must be 1-64 characters/.test(d)), details.join(' | '));
    assert.ok(details.some((d) => /^ttl_s: /.test(d)), details.join(' | '));
    assert.ok(details.some((d) => /^response_timeout_s: command replies are not enabled/.test(d)), details.join(' | '));
    const notJson = letters.find((l) => l.reason === 'invalid_json');
    assert.deepEqual(Buffer.from(notJson?.value_base64 ?? '', 'base64'), Buffer.from([0xff, 0xfe, 0x00]), 'the original bytes are kept');
    assert.equal(letters.find((l) => l.reason === 'unknown_device')?.key, unknownDevice);
    for (const letter of letters) {
      assert.equal(letter.tenant_id, 'acme');
      assert.equal(letter.source.topic, topics().commandRequests('acme'));
    }
    // The other tenant's device got nothing, and nothing was created twice.
    assert.deepEqual(await listed(foreignDevice), []);
    assert.deepEqual((await listed(device)).map((c) => c.name).sort(), ['after-poison', 'open']);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^devicelink_commands_requests_dead_lettered_total\{reason="tenant_mismatch"\} 1$/m);
  });

  it('a request for a device with too many unfinished commands waits for room instead of being dead-lettered', async () => {
    // Offline: its commands stay queued.
    const busy = (await root.post('/v1/tenants/acme/devices', { name: 'busy' })).json<{ id: string }>().id;
    const queued: CommandBody[] = [];
    for (let n = 0; n < 3; n++) queued.push((await root.post(`/v1/devices/${busy}/commands`, { name: `queued-${n}` })).json<CommandBody>());
    await produceRecords(topics().commandRequests('acme'), [{ key: busy, value: JSON.stringify({ command_id: 'later-1', device_id: busy, name: 'later' }) }]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual((await listed(busy)).map((c) => c.name), ['queued-0', 'queued-1', 'queued-2'], 'not created while the device is full');
    assert.equal((await root.post(`/v1/devices/${busy}/commands/${queued[0]?.id}/cancel`)).statusCode, 200);
    await waitFor(async () => (await listed(busy)).some((c) => c.name === 'later'), 20_000);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.doesNotMatch(metrics, /commands_requests_dead_lettered_total\{reason="too_many_pending"\}/);
  });

  it("consumes a tenant created on another replica within the topic refresh, and never the status or dead-letter topics", async () => {
    // Written directly, as another replica's registry would: this app learns of it by listing topics.
    const seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    let seeded: string;
    let lateDevice: string;
    try {
      seeded = await seeder.tenant();
      lateDevice = await seeder.device(seeded);
    } finally {
      await seeder.close();
    }
    await produceRecords(topics().commandRequests(seeded), [{ key: lateDevice, value: JSON.stringify({ device_id: lateDevice, name: 'prime' }) }]);
    await waitFor(async () => (await listed(lateDevice)).length === 1, 20_000);
    // A record on commands.status.{tenant} is no request: nothing reads it as one.
    await produceRecords(topics().commandStatus(seeded), [{ key: lateDevice, value: JSON.stringify({ device_id: lateDevice, name: 'not-a-request' }) }]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual((await listed(lateDevice)).map((c) => c.name), ['prime']);
  });
});
