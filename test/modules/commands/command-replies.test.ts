import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createCommand, eventsTo, waitForCommand, type CommandBody } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { TEST_HOOK_TOKEN } from '../../helpers/env.js';
import { postEvent } from '../../helpers/telemetry.js';

/** What the shipped replies rule posts for a device's publish on devices/{id}/command-replies. */
function replyEvent(deviceId: string, payload: unknown, topicDevice = deviceId, pubProps: Record<string, unknown> = { 'User-Property': {} }) {
  return {
    event: 'command.reply',
    id: randomUUID().replaceAll('-', '').toUpperCase(),
    clientid: deviceId,
    username: deviceId,
    topic: `devices/${topicDevice}/command-replies`,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    pub_props: pubProps,
    publish_received_at: Date.now(),
    timestamp: Date.now(),
  };
}

describe('command replies (COMMAND_REPLIES=enabled)', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let app: FastifyInstance;
  let repliesOff: FastifyInstance;
  let root: AdminClient;
  let device: string;
  let other: string;

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_POLL_INTERVAL_MS: '100' });
    app = await ctx.app({}, { COMMAND_REPLIES: 'enabled' });
    // A second replica with replies off shares the database: its dispatcher
    // looks for due commands only every 10 s, so the commands created on
    // `app` go out from `app` (nudged at once), carrying the response topic
    // these tests look for. Which replica sends a command created on this
    // one is a race (`app` looks every 100 ms), so what a replies-off
    // replica publishes is checked in command-delivery.test.ts, alone.
    repliesOff = await ctx.app({}, { COMMANDS_POLL_INTERVAL_MS: '10000' });
    emqx.sendEventsTo(eventsTo(app));
    root = adminClient(app);
    assert.equal((await root.post('/v1/tenants', { id: 'lab', name: 'Lab' })).statusCode, 201);
    device = (await root.post('/v1/tenants/lab/devices', { name: 'scope' })).json<{ id: string }>().id;
    other = (await root.post('/v1/tenants/lab/devices', { name: 'scope-2' })).json<{ id: string }>().id;
    for (const id of [device, other]) await emqx.subscribe(id, `devices/${id}/commands`);
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  const send = async (body: object = { name: 'measure' }, target = device) => {
    const response = await createCommand(app, target, body);
    assert.equal(response.statusCode, 202, response.body);
    return response.json<CommandBody>();
  };
  const reply = async (payload: unknown, from = device, topicDevice = from) => {
    const response = await postEvent(app, replyEvent(from, payload, topicDevice));
    assert.equal(response.statusCode, 204);
  };
  const metric = async (outcome: string) =>
    Number(new RegExp(`^devicelink_commands_replies_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? 0);

  it('lets a device publish its replies: in the ACL of its authentication answer and at /emqx/authz; not with replies off', async () => {
    const key = (await root.post(`/v1/devices/${device}/keys`, { label: 'replies' })).json<{ key: string }>().key;
    // Its session ends first: under the reject policy a CONNECT while it is live is refused.
    emqx.disconnect(device);
    await emqx.settle();
    const authn = await app.inject({
      method: 'POST',
      url: '/emqx/authn',
      headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` },
      payload: { clientid: device, username: device, password: key, peerhost: '10.0.0.1' },
    });
    assert.deepEqual(authn.json<{ acl: unknown[] }>().acl, [
      { permission: 'allow', action: 'publish', topic: `devices/${device}/telemetry` },
      { permission: 'allow', action: 'publish', topic: `devices/${device}/command-replies` },
      { permission: 'allow', action: 'subscribe', topic: `devices/${device}/commands` },
      { permission: 'deny', action: 'all', topic: '#' },
    ]);
    const authz = (target: FastifyInstance, topic: string, action = 'publish') =>
      target
        .inject({ method: 'POST', url: '/emqx/authz', headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` }, payload: { clientid: device, username: device, topic, action } })
        .then((response) => response.json<{ result: string }>().result);
    assert.equal(await authz(app, `devices/${device}/command-replies`), 'allow');
    assert.equal(await authz(app, `devices/${other}/command-replies`), 'deny');
    assert.equal(await authz(app, `devices/${device}/command-replies`, 'subscribe'), 'deny');
    assert.equal(await authz(repliesOff, `devices/${device}/command-replies`), 'deny');
    await emqx.subscribe(device, `devices/${device}/commands`);
  });

  it('an ok reply makes the command succeeded, an error reply failed, with what the device said', async () => {
    const ok = await send({ name: 'measure', response_timeout_s: 600 });
    assert.equal(ok.response_timeout_s, 600);
    await waitForCommand(root, device, ok.id, 'acked');
    await reply({ command_id: ok.id, status: 'ok', result: { volts: 3.3 } });
    const succeeded = await waitForCommand(root, device, ok.id, 'succeeded');
    assert.deepEqual(succeeded.reply?.result, { volts: 3.3 });
    assert.equal(succeeded.reply?.status, 'ok');
    assert.ok(succeeded.finished_at);

    const bad = await send({ name: 'calibrate' });
    assert.equal(bad.response_timeout_s, 60, 'the default');
    await waitForCommand(root, device, bad.id, 'acked');
    await reply({ command_id: bad.id, status: 'error', result: 'sensor busy' });
    assert.equal((await waitForCommand(root, device, bad.id, 'failed')).reply?.result, 'sensor busy');
    // A second reply changes nothing.
    await reply({ command_id: bad.id, status: 'ok' });
    assert.equal((await waitForCommand(root, device, bad.id, 'failed')).reply?.status, 'error');
    assert.equal(await metric('late'), 1);
  });

  it('a reply that comes before the delivery events still settles the command, and the late ack changes nothing', async () => {
    // EMQX's events are held back: the device's reply overtakes them.
    emqx.sendEventsTo(null);
    try {
      const early = await send();
      await waitForCommand(root, device, early.id, 'sent');
      await reply({ command_id: early.id, status: 'ok' });
      const settled = await waitForCommand(root, device, early.id, 'succeeded');
      const published = emqx.published.find((p) => p.status === 200 && String(p.body.payload).includes(early.id));
      const ack = await postEvent(app, {
        event: 'message.acked',
        id: published?.id,
        clientid: device,
        username: device,
        topic: `devices/${device}/commands`,
        qos: 1,
        flags: { dup: false, retain: false },
        pub_props: { 'User-Property': { command_id: early.id } },
        timestamp: Date.now(),
      });
      assert.equal(ack.statusCode, 204);
      assert.equal((await waitForCommand(root, device, early.id, 'succeeded')).updated_at, settled.updated_at);
    } finally {
      emqx.sendEventsTo(eventsTo(app));
    }
  });

  it('an acked command with no reply within response_timeout_s becomes timed_out', async () => {
    const silent = await send({ name: 'ping', response_timeout_s: 1 });
    await waitForCommand(root, device, silent.id, 'acked');
    const timedOut = await waitForCommand(root, device, silent.id, 'timed_out', 5000);
    assert.equal(timedOut.reason, 'no_reply');
  });

  it("a reply naming another device's command changes nothing and is counted; so are replies that are no reply", async () => {
    const theirs = await send({ name: 'arm' }, other);
    await waitForCommand(root, other, theirs.id, 'acked');
    // From this device, on its own topic, naming the other's command.
    await reply({ command_id: theirs.id, status: 'ok' }, device);
    assert.equal(await metric('foreign'), 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await waitForCommand(root, other, theirs.id, 'acked')).reply, null);

    const before = await metric('invalid');
    await reply('not json');
    await reply({ command_id: theirs.id, status: 'maybe' });
    await reply({ command_id: theirs.id, status: 'ok' }, device, other);
    assert.equal(await metric('invalid'), before + 3);
    await reply({ command_id: randomUUID(), status: 'ok' });
    assert.equal(await metric('unknown_command'), 1);
  });

  it('carries the MQTT 5 Response Topic and Correlation Data, and matches a reply by its correlation data alone', async () => {
    const command = await send({ name: 'read-meter' });
    await waitForCommand(root, device, command.id, 'acked');
    const published = emqx.published.find((p) => p.status === 200 && String(p.body.payload).includes(command.id));
    assert.deepEqual(
      { response_topic: (published?.body.properties as Record<string, unknown>).response_topic, correlation_data: (published?.body.properties as Record<string, unknown>).correlation_data },
      { response_topic: `devices/${device}/command-replies`, correlation_data: command.id },
    );
    // The device's MQTT library answers the request: no command_id in the payload, the correlation data carried back.
    const response = await postEvent(app, replyEvent(device, { status: 'ok', result: { kwh: 12.5 } }, device, { 'User-Property': {}, 'Correlation-Data': command.id }));
    assert.equal(response.statusCode, 204);
    assert.deepEqual((await waitForCommand(root, device, command.id, 'succeeded')).reply?.result, { kwh: 12.5 });

    // The correlation data wins over a command_id in the payload; without either, a reply is no reply.
    const second = await send({ name: 'read-meter' });
    await waitForCommand(root, device, second.id, 'acked');
    await postEvent(app, replyEvent(device, { command_id: command.id, status: 'error' }, device, { 'User-Property': {}, 'Correlation-Data': second.id }));
    assert.equal((await waitForCommand(root, device, second.id, 'failed')).reply?.status, 'error');
    assert.equal((await waitForCommand(root, device, command.id, 'succeeded')).reply?.status, 'ok');
    const invalid = await metric('invalid');
    await postEvent(app, replyEvent(device, { status: 'ok' }));
    assert.equal(await metric('invalid'), invalid + 1);
  });

  it('?wait answers with the finished command: its reply when replies are on, its ack when off, even when another replica saw the events', async () => {
    // The device answers each command it receives, as soon as it is acked.
    const answered = new Set<string>();
    const answering = setInterval(() => {
      for (const published of emqx.published) {
        const id = (published.body.properties as Record<string, unknown> | undefined)?.correlation_data;
        if (published.status !== 200 || typeof id !== 'string' || answered.has(id) || !published.topic.includes(device)) continue;
        answered.add(id);
        void postEvent(app, replyEvent(device, { status: 'ok', result: 'done' }, device, { 'User-Property': {}, 'Correlation-Data': id }));
      }
    }, 50);
    try {
      const started = Date.now();
      const waited = await root.post(`/v1/devices/${device}/commands?wait=30`, { name: 'open-valve' });
      assert.equal(waited.statusCode, 200, waited.body);
      assert.equal(waited.json<CommandBody>().state, 'succeeded');
      assert.equal(waited.json<CommandBody>().reply?.result, 'done');
      assert.ok(Date.now() - started < 10_000);
    } finally {
      clearInterval(answering);
    }

    // Replies off, on a replica that gets none of EMQX's events: it reads the command until it is acked.
    const offClient = adminClient(repliesOff);
    const acked = await offClient.post(`/v1/devices/${device}/commands?wait=30`, { name: 'blink' });
    assert.equal(acked.statusCode, 200, acked.body);
    assert.equal(acked.json<CommandBody>().state, 'acked');

    // No answer within the wait: 202 with the command as it is.
    emqx.disconnect(other);
    const pending = await root.post(`/v1/devices/${other}/commands?wait=1`, { name: 'arm' });
    assert.equal(pending.statusCode, 202, pending.body);
    assert.notEqual(pending.json<CommandBody>().finished_at, undefined);
    assert.equal(pending.json<CommandBody>().finished_at, null);
    assert.equal((await root.post(`/v1/devices/${other}/commands?wait=0`, { name: 'arm' })).statusCode, 400);
  });
});
