import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createCommand, eventsTo, isForwardPath, outboxDrained, statesByCommand, statusRecords, waitForCommand, type CommandBody } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';

/**
 * Commands through an EMQX that behaves as docs/emqx-contract.md §F says: REST
 * publish answering 200 with an id, 202 without one, or 503; delivery events
 * arriving unordered, twice, and before the publish call has returned.
 */
describe('sending commands and tracking their delivery', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let app: FastifyInstance;
  let root: AdminClient;
  /** Real time, moved ahead by `skipped` to reach an expiry without waiting for it. */
  let skipped = 0;
  const clock = () => Date.now() + skipped;

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_POLL_INTERVAL_MS: '100', EMQX_API_TIMEOUT_MS: '300' });
    app = await ctx.app({ clock });
    emqx.sendEventsTo(eventsTo(app));
    root = adminClient(app);
    assert.equal((await root.post('/v1/tenants', { id: 'plant', name: 'Plant' })).statusCode, 201);
  });
  beforeEach(() => {
    emqx.deliveryPlan({});
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  const newDevice = async () => (await root.post('/v1/tenants/plant/devices', { name: 'pump' })).json<{ id: string }>().id;
  const topicOf = (device: string) => `devices/${device}/commands`;
  const send = async (device: string, body: object = { name: 'reboot' }) => {
    const response = await createCommand(app, device, body);
    assert.equal(response.statusCode, 202, response.body);
    return response.json<CommandBody>();
  };

  it('publishes at QoS 1 with the remaining TTL and the command id, and follows it to acked', async () => {
    const device = await newDevice();
    await emqx.subscribe(device, topicOf(device));
    const command = await send(device, { name: 'set_mode', params: { mode: 'eco' }, ttl_s: 600 });
    const acked = await waitForCommand(root, device, command.id, 'acked');
    const published = emqx.published.find((p) => p.topic === topicOf(device));
    assert.ok(published);
    assert.equal(published.status, 200);
    assert.equal(published.body.qos, 1, 'QoS 1: EMQX defaults to 0, which is never acked');
    assert.equal(published.body.retain, false);
    const properties = published.body.properties as { message_expiry_interval: number; user_properties: Record<string, string> } & Record<string, unknown>;
    assert.ok(properties.message_expiry_interval > 595 && properties.message_expiry_interval <= 600, String(properties.message_expiry_interval));
    assert.deepEqual(properties.user_properties, { command_id: command.id });
    // Replies are off (the default): no MQTT 5 request/response properties.
    assert.equal(properties.response_topic, undefined);
    assert.equal(properties.correlation_data, undefined);
    assert.deepEqual(JSON.parse(String(published.body.payload)), { command_id: command.id, name: 'set_mode', params: { mode: 'eco' }, expires_at: command.expires_at });
    assert.equal(acked.emqx_message_id, published.id, "EMQX's message id is kept");
    assert.ok(acked.sent_at && acked.delivered_at && acked.acked_at && acked.finished_at);
    assert.equal(acked.attempts, 1);
  });

  it('a 202 leaves the command queued until the device subscribes to its command topic', async () => {
    const device = await newDevice();
    const command = await send(device);
    const waiting = await waitForCommand(root, device, command.id, (c) => c.last_error === 'no_subscriber');
    assert.equal(waiting.state, 'queued');
    const before = emqx.published.filter((p) => p.topic === topicOf(device)).length;
    // Connecting alone sends nothing; the subscription does (a session.subscribed event).
    await emqx.connect(device);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(emqx.published.filter((p) => p.topic === topicOf(device)).length, before);
    await emqx.subscribe(device, topicOf(device));
    const acked = await waitForCommand(root, device, command.id, 'acked');
    assert.equal(acked.attempts, 2);
    assert.equal(acked.last_error, null);
  });

  it('a device with a persistent session gets 200 while offline and the command when it reconnects', async () => {
    const device = await newDevice();
    await emqx.subscribe(device, topicOf(device), { persistent: true });
    emqx.disconnect(device);
    const command = await send(device);
    const sent = await waitForCommand(root, device, command.id, 'sent');
    assert.ok(sent.emqx_message_id);
    await emqx.subscribe(device, topicOf(device));
    await waitForCommand(root, device, command.id, 'acked');
  });

  it('retries a 503, a timeout and a dropped connection with backoff; a command that got no answer can no longer be canceled', async () => {
    const device = await newDevice();
    await emqx.subscribe(device, topicOf(device));
    emqx.failNextPublishes(503, 'reset', 'hang');
    const command = await send(device);
    const unanswered = await waitForCommand(root, device, command.id, (c) => c.last_error === 'no_answer' && c.attempts === 3);
    assert.equal(unanswered.state, 'queued');
    const cancel = await root.post(`/v1/devices/${device}/commands/${command.id}/cancel`);
    assert.equal(cancel.statusCode, 409);
    assert.match(cancel.json<{ message: string }>().message, /EMQX may have it/);
    const acked = await waitForCommand(root, device, command.id, 'acked', 15_000);
    assert.equal(acked.attempts, 4);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^devicelink_commands_publish_failures_total\{reason="status_503"\} 1$/m);
    assert.match(metrics, /^devicelink_commands_publish_failures_total\{reason="no_answer"\} 2$/m);
  });

  it('events before the publish answer, repeated and out of order, move each command once and forward only', async () => {
    emqx.deliveryPlan({ beforeAnswer: true, repeat: true, shuffle: true });
    const device = await newDevice();
    await emqx.subscribe(device, topicOf(device));
    const commands: CommandBody[] = [];
    for (let i = 0; i < 10; i++) commands.push(await send(device, { name: `step-${i}` }));
    for (const command of commands) await waitForCommand(root, device, command.id, 'acked');
    await emqx.settle();
    // Sent in creation order, each once.
    const names = emqx.published.filter((p) => p.topic === topicOf(device)).map((p) => (JSON.parse(String(p.body.payload)) as { name: string }).name);
    assert.deepEqual(names, commands.map((c) => c.name));
    const ids = new Set(commands.map((c) => c.id));
    await outboxDrained(app);
    const records = (await statusRecords(ctx.config.kafka.topicPrefix, 'plant', 2 * commands.length, { settleMs: 1500 })).filter((r) => ids.has(r.command_id));
    for (const [id, states] of statesByCommand(records)) {
      // Steps are skipped when events come before the answer, or the ack before the delivery; never repeated.
      assert.ok(isForwardPath(states, 'acked'), `${id}: ${states.join(' → ')}`);
    }
    assert.equal(statesByCommand(records).size, commands.length);
    for (const record of records) assert.equal(record.key, device);
  });

  it('delivery.dropped: a full queue drops the command, an expiry in EMQX expires it', async () => {
    const device = await newDevice();
    await emqx.subscribe(device, topicOf(device));
    emqx.dropNext(device, 'queue_full');
    const full = await send(device);
    const dropped = await waitForCommand(root, device, full.id, 'dropped');
    assert.equal(dropped.reason, 'queue_full');
    emqx.dropNext(device, 'expired');
    const stale = await send(device);
    const expired = await waitForCommand(root, device, stale.id, 'expired');
    assert.equal(expired.reason, 'expired_in_emqx');
    // A late ack of a finished command changes nothing.
    const again = await send(device);
    await waitForCommand(root, device, again.id, 'acked');
  });

  it('the sweeper expires what passed expires_at unacknowledged: never sent at once; held by an offline session, delivered to a QoS 0 subscriber after the grace', async () => {
    const offline = await newDevice();
    const neverSent = await send(offline, { name: 'late', ttl_s: 10 });
    await waitForCommand(root, offline, neverSent.id, (c) => c.last_error === 'no_subscriber');
    // EMQX holds it for a session that never comes back (and, expiring, drops it without an event).
    const away = await newDevice();
    await emqx.subscribe(away, topicOf(away), { persistent: true });
    emqx.disconnect(away);
    const held = await send(away, { name: 'held', ttl_s: 10 });
    await waitForCommand(root, away, held.id, 'sent');
    const qos0 = await newDevice();
    await emqx.subscribe(qos0, topicOf(qos0), { qos: 0 });
    const unacked = await send(qos0, { name: 'fire', ttl_s: 10 });
    await waitForCommand(root, qos0, unacked.id, 'delivered');
    skipped += 11_000;
    const expired = await waitForCommand(root, offline, neverSent.id, 'expired');
    assert.equal(expired.reason, 'not_sent');
    // EMQX may still take a PUBACK for what it holds: those wait a minute longer.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await waitForCommand(root, away, held.id, () => true)).state, 'sent');
    skipped += 60_000;
    assert.equal((await waitForCommand(root, away, held.id, 'expired')).reason, 'not_delivered');
    assert.equal((await waitForCommand(root, qos0, unacked.id, 'expired')).reason, 'not_acked');
  });

  it('a command EMQX refuses (400) is dropped, not retried', async () => {
    const device = await newDevice();
    await emqx.subscribe(device, topicOf(device));
    emqx.failNextPublishes(400);
    const refused = await send(device);
    const dropped = await waitForCommand(root, device, refused.id, 'dropped');
    assert.equal(dropped.reason, 'refused_by_emqx');
    assert.equal(dropped.attempts, 1);
    // The device's next command is not held up behind it.
    await waitForCommand(root, device, (await send(device)).id, 'acked');
  });

  it("sends one device's commands in creation order, also after waiting for its subscription", async () => {
    const device = await newDevice();
    const commands: CommandBody[] = [];
    for (let i = 0; i < 5; i++) commands.push(await send(device, { name: `seq-${i}` }));
    await waitForCommand(root, device, commands[0]?.id ?? '', (c) => c.last_error === 'no_subscriber');
    await emqx.subscribe(device, topicOf(device));
    for (const command of commands) await waitForCommand(root, device, command.id, 'acked');
    const handed = emqx.published.filter((p) => p.topic === topicOf(device) && p.status === 200).map((p) => (JSON.parse(String(p.body.payload)) as { name: string }).name);
    assert.deepEqual(handed, commands.map((c) => c.name));
  });

  it("ends a deleted device's commands with it: queued ones canceled, those EMQX held dropped, then gone", async () => {
    const device = await newDevice();
    await emqx.subscribe(device, topicOf(device), { persistent: true });
    emqx.disconnect(device);
    // The offline persistent session holds the first; the second waits after a 503.
    const held = await send(device);
    await waitForCommand(root, device, held.id, 'sent');
    emqx.failNextPublishes(503, 503, 503);
    const waiting = await send(device, { name: 'waiting' });
    await waitForCommand(root, device, waiting.id, (c) => c.last_error === 'status_503');
    assert.equal((await root.delete(`/v1/devices/${device}`)).statusCode, 204);
    emqx.failNextPublishes();
    // In the delete's own transaction: nothing is left under the freed id.
    const pool = new pg.Pool({ connectionString: ctx.db.url, max: 1 });
    try {
      assert.equal((await pool.query('SELECT count(*)::int AS n FROM commands WHERE device_id = $1', [device])).rows[0].n, 0);
    } finally {
      await pool.end();
    }
    await outboxDrained(app);
    const records = (await statusRecords(ctx.config.kafka.topicPrefix, 'plant', 1, { settleMs: 1500 })).filter((r) => r.device_id === device);
    assert.deepEqual(records.map((r) => `${r.name}:${r.state}`).sort(), ['reboot:dropped', 'reboot:queued', 'reboot:sent', 'waiting:canceled', 'waiting:queued']);
  });
});
