import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createPasswordHasher } from '../../../src/lib/password-hasher.js';
import { adminClient } from '../../helpers/admin.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { connectAs } from '../../helpers/emqx-auth.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { waitFor } from '../../helpers/wait.js';

describe('changed credentials end sessions, on every replica', () => {
  let ctx: TestContext;
  let first: FastifyInstance;
  let second: FastifyInstance;
  let seed: DeviceSeeder;
  let emqx: EmqxSim;
  let tenantId: string;

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), DUPLICATE_CLIENT_POLICY: 'takeover' });
    [first, second] = await Promise.all([ctx.app(), ctx.app()]);
    seed = createDeviceSeeder(ctx.db.url);
    tenantId = await seed.tenant();
  });
  after(async () => {
    await seed.close();
    await ctx.close();
    await emqx.close();
  });

  const kicksOf = (deviceId: string) => emqx.calls.filter((call) => call.method === 'DELETE' && call.clientId === deviceId);
  /** The session was ended through EMQX once, and no second time after. */
  async function assertKickedOnce(deviceId: string) {
    await waitFor(() => kicksOf(deviceId).length > 0, 4000);
    await sleep(1000);
    assert.equal(kicksOf(deviceId).length, 1);
    assert.ok(kicksOf(deviceId).every((call) => call.authorized));
  }

  type Scenario = { name: string; secret: 'key' | 'psk'; change: (deviceId: string, keyId: string) => Promise<{ statusCode: number }> };
  const scenarios: Scenario[] = [
    { name: 'a revoked key', secret: 'key', change: (deviceId, keyId) => adminClient(first).delete(`/v1/devices/${deviceId}/keys/${keyId}`) },
    { name: 'a disabled device', secret: 'key', change: (deviceId) => adminClient(first).patch(`/v1/devices/${deviceId}`, { disabled: true }) },
    { name: 'a deleted device', secret: 'key', change: (deviceId) => adminClient(first).delete(`/v1/devices/${deviceId}`) },
    { name: 'a replaced PSK', secret: 'psk', change: (deviceId) => adminClient(first).put(`/v1/devices/${deviceId}/psk`, { psk: 'a brand new pre-shared key' }) },
    { name: 'a removed PSK', secret: 'psk', change: (deviceId) => adminClient(first).delete(`/v1/devices/${deviceId}/psk`) },
  ];

  for (const scenario of scenarios) {
    it(`${scenario.name}: both replicas refuse the old credential at once and the session is kicked once`, async () => {
      const deviceId = await seed.device(tenantId);
      const { key, keyId } = await seed.key(deviceId);
      const psk = await seed.psk(deviceId);
      const secret = scenario.secret === 'key' ? key : psk;
      // Both replicas hold the verification in memory.
      for (const app of [first, second, second]) assert.equal(await connectAs(app, deviceId, secret), 'allow');
      await emqx.connect(deviceId);

      const changed = await scenario.change(deviceId, keyId);
      assert.ok(changed.statusCode === 200 || changed.statusCode === 204, `the change answered ${changed.statusCode}`);
      // The replica that made the change has applied it by the time it answers.
      assert.equal(await connectAs(first, deviceId, secret), 'deny');
      await waitFor(async () => (await connectAs(second, deviceId, secret)) === 'deny', 1000);
      await assertKickedOnce(deviceId);
    });
  }

  it('a PSK replaced while a CONNECT with the old one waits for argon2 is refused: the answer follows the change', async () => {
    const deviceId = await seed.device(tenantId);
    const oldPsk = 'the old pre-shared key, still valid when checked';
    // A costly hash (its own parameters decide the verify time): the check takes long enough for the change to land during it.
    const costly = createPasswordHasher({ memoryKib: 64 * 1024, timeCost: 12, parallelism: 1 });
    await seed.query('INSERT INTO device_psk (device_id, hash) VALUES ($1, $2)', [deviceId, await costly.hash(oldPsk)]);
    const startedAt = performance.now();
    const connecting = connectAs(second, deviceId, oldPsk);
    await sleep(50);
    assert.equal((await adminClient(first).put(`/v1/devices/${deviceId}/psk`, { psk: 'the new pre-shared key' })).statusCode, 204);
    assert.equal(await connecting, 'deny');
    assert.ok(performance.now() - startedAt > 100, 'the check outlasted the change');
    assert.equal(await connectAs(second, deviceId, 'the new pre-shared key'), 'allow');
  });

  it('a rotation kicks nobody at once: the old keys keep working through the grace period', async () => {
    const deviceId = await seed.device(tenantId);
    const { key } = await seed.key(deviceId);
    assert.equal(await connectAs(second, deviceId, key), 'allow');
    await emqx.connect(deviceId);
    assert.equal((await adminClient(first).post(`/v1/devices/${deviceId}/keys/rotate`, { grace_period_s: 3600 })).statusCode, 201);
    await sleep(2500);
    assert.equal(kicksOf(deviceId).length, 0);
    assert.equal(await connectAs(second, deviceId, key), 'allow');
  });
});
