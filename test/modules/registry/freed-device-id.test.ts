import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createCommand, type CommandBody } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { connectAs } from '../../helpers/emqx-auth.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { postEvent } from '../../helpers/telemetry.js';

const MAX_PENDING = 2;

describe('a freed device id carries nothing into the next device', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let app: FastifyInstance;
  let root: AdminClient;

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_MAX_PENDING_PER_DEVICE: String(MAX_PENDING), DUPLICATE_CLIENT_POLICY: 'takeover' });
    app = await ctx.app();
    root = adminClient(app);
    for (const id of ['alpha', 'bravo']) assert.equal((await root.post('/v1/tenants', { id, name: id })).statusCode, 201);
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  it("tenant A deletes X, tenant B creates X: no session, commands, idempotency keys, pending count or credentials of A's device", async () => {
    const id = randomUUID();
    assert.equal((await root.post('/v1/tenants/alpha/devices', { id, name: 'first life' })).statusCode, 201);
    const psk = 'a PSK people reuse across devices';
    assert.equal((await root.put(`/v1/devices/${id}/psk`, { psk })).statusCode, 204);
    const key = (await root.post(`/v1/devices/${id}/keys`)).json<{ key: string }>().key;
    assert.equal(await connectAs(app, id, psk), 'allow');
    assert.equal(await connectAs(app, id, key), 'allow');
    const connectedAt = Date.now();
    assert.equal((await postEvent(app, { event: 'client.connected', clientid: id, username: id, peername: '10.0.0.1:1', proto_ver: 5, connected_at: connectedAt })).statusCode, 204);
    assert.equal((await root.get(`/v1/devices/${id}/status`)).json().connected, true);
    const first = await createCommand(app, id, { name: 'reboot' }, { idempotencyKey: 'order-1' });
    assert.equal(first.statusCode, 202, first.body);
    assert.equal((await createCommand(app, id, { name: 'ping' })).statusCode, 202);
    assert.equal((await createCommand(app, id, { name: 'one-too-many' })).statusCode, 429);

    assert.equal((await root.delete(`/v1/devices/${id}`)).statusCode, 204);
    assert.equal((await root.post('/v1/tenants/bravo/devices', { id, name: 'second life' })).statusCode, 201);

    const status = (await root.get(`/v1/devices/${id}/status`)).json();
    assert.equal(status.connected, false);
    assert.equal(status.connected_at, null);
    assert.equal(status.online, false);
    assert.equal(status.last_seen_at, null);

    assert.deepEqual((await root.get(`/v1/devices/${id}/commands`)).json().items, []);
    const again = await createCommand(app, id, { name: 'reboot' }, { idempotencyKey: 'order-1' });
    assert.equal(again.statusCode, 202, again.body);
    const command = again.json<CommandBody>();
    assert.notEqual(command.id, first.json<CommandBody>().id);
    assert.equal(command.tenant_id, 'bravo');
    assert.equal((await createCommand(app, id, { name: 'ping' })).statusCode, 202, 'the pending count starts at zero');

    // Credentials went with the device, also those cached: the same PSK set again is verified for the new device.
    assert.equal(await connectAs(app, id, key), 'deny');
    assert.equal(await connectAs(app, id, psk), 'deny');
    assert.equal((await root.put(`/v1/devices/${id}/psk`, { psk })).statusCode, 204);
    const allowed = await app.inject({
      method: 'POST',
      url: '/emqx/authn',
      headers: { authorization: `Bearer ${ctx.config.emqx.hookTokens[0]}` },
      payload: { clientid: id, username: id, password: psk, peerhost: '10.9.0.1' },
    });
    assert.equal(allowed.json().result, 'allow');
    assert.equal(allowed.json().client_attrs.tenant_id, 'bravo');
  });
});
