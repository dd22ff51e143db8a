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
function replyEvent(deviceId: string, payload: unknown, topicDevice = deviceId) {
  return {
    event: 'command.reply',
    id: randomUUID().replaceAll('-', '').toUpperCase(),
    clientid: deviceId,
    username: deviceId,
    topic: `devices/${topicDevice}/command-replies`,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
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
    repliesOff = await ctx.app();
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
    Number(new RegExp(`^commands_replies_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? 0);

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
});
