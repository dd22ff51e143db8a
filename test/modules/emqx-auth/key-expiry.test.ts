import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { TEST_HOOK_TOKEN } from '../../helpers/env.js';
import { waitFor } from '../../helpers/wait.js';

describe('sessions of a key that gets a not_after end when it comes', () => {
  let emqx: EmqxSim;
  let ctx: TestContext;
  /** Two replicas, both sweeping: each due key is handled once. */
  let apps: FastifyInstance[];
  let admin: AdminClient;
  let connectedAt = Date.now();

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext(emqxEnv(emqx));
    apps = await Promise.all([ctx.app(), ctx.app()]);
    admin = adminClient(apps[0]!);
    assert.equal((await admin.post('/v1/tenants', { id: 'acme', name: 'Acme' })).statusCode, 201);
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  const hook = { authorization: `Bearer ${TEST_HOOK_TOKEN}` };
  /** A CONNECT with the key, and (when allowed) the connect event EMQX then sends. */
  async function connect(deviceId: string, key: string): Promise<number> {
    const answer = await apps[1]!.inject({ method: 'POST', url: '/emqx/authn', headers: hook, payload: { clientid: deviceId, username: deviceId, password: key, peerhost: '10.3.0.1' } });
    assert.equal(answer.json().result, 'allow', answer.body);
    const at = ++connectedAt;
    const event = await apps[0]!.inject({ method: 'POST', url: '/emqx/events', headers: hook, payload: { event: 'client.connected', clientid: deviceId, username: deviceId, connected_at: at } });
    assert.equal(event.statusCode, 204);
    await emqx.connect(deviceId);
    return at;
  }
  async function disconnect(deviceId: string, at: number) {
    const event = await apps[0]!.inject({
      method: 'POST',
      url: '/emqx/events',
      headers: hook,
      payload: { event: 'client.disconnected', clientid: deviceId, username: deviceId, reason: 'normal', connected_at: at, disconnected_at: at + 1 },
    });
    assert.equal(event.statusCode, 204);
    emqx.disconnect(deviceId);
  }
  async function deviceWithKey() {
    const device = (await admin.post('/v1/tenants/acme/devices', { name: 'sensor' })).json().id as string;
    const key = (await admin.post(`/v1/devices/${device}/keys`, {})).json().key as string;
    return { device, key };
  }
  const kicksOf = (deviceId: string) => emqx.calls.filter((call) => call.method === 'DELETE' && call.clientId === deviceId).length;
  const rotate = async (deviceId: string, graceS: number) => {
    const rotated = await admin.post(`/v1/devices/${deviceId}/keys/rotate`, { grace_period_s: graceS });
    assert.equal(rotated.statusCode, 201, rotated.body);
    return rotated.json().key as string;
  };

  it('a rotation ends a session opened with an old key when the grace ends, not before, once', async () => {
    const { device, key } = await deviceWithKey();
    await connect(device, key);
    const rotatedAt = Date.now();
    await rotate(device, 3);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal(kicksOf(device), 0, 'still within the grace period');
    await waitFor(() => kicksOf(device) > 0, 4000);
    assert.ok(Date.now() - rotatedAt >= 3000, 'not before the grace ended');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(kicksOf(device), 1, 'one replica kicked, once');
  });

  it('a grace of 0 ends the session at once', async () => {
    const { device, key } = await deviceWithKey();
    await connect(device, key);
    await rotate(device, 0);
    await waitFor(() => kicksOf(device) > 0, 2500);
  });

  it('the deadline outlives the service: replicas started after the grace ended still end the session', async () => {
    const { device, key } = await deviceWithKey();
    await connect(device, key);
    await rotate(device, 2);
    await Promise.all(apps.map((app) => app.close()));
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(kicksOf(device), 0, 'nobody was running when the grace ended');
    apps = await Promise.all([ctx.app(), ctx.app()]);
    admin = adminClient(apps[0]!);
    await waitFor(() => kicksOf(device) > 0, 3000);
  });

  it('a device that reconnected with the new key is left alone', async () => {
    const { device, key } = await deviceWithKey();
    const first = await connect(device, key);
    const next = await rotate(device, 2);
    await disconnect(device, first);
    await connect(device, next);
    await new Promise((resolve) => setTimeout(resolve, 4000));
    assert.equal(kicksOf(device), 0);
    const metrics = (await apps[0]!.inject({ method: 'GET', url: '/metrics' })).body + (await apps[1]!.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /devicelink_emqx_kicks_total\{reason="key_expired",result="other_credential"\} 1/);
  });
});
