import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { publishChange, untilApplied } from '../../helpers/change-signals.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { connectAs } from '../../helpers/emqx-auth.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';
import { startEmqxStandIn, standInEnv, type EmqxStandIn } from '../../helpers/emqx-stand-in.js';

describe('revocation across replicas', () => {
  let ctx: TestContext;
  let first: FastifyInstance;
  let second: FastifyInstance;
  let seed: DeviceSeeder;
  let emqx: EmqxStandIn;
  let tenantId: string;

  before(async () => {
    emqx = await startEmqxStandIn();
    ctx = await createTestContext({ ...standInEnv(emqx), DUPLICATE_CLIENT_POLICY: 'takeover' });
    [first, second] = await Promise.all([ctx.app(), ctx.app()]);
    seed = createDeviceSeeder(ctx.db.url);
    tenantId = await seed.tenant();
  });
  after(async () => {
    await seed.close();
    await ctx.close();
    await emqx.close();
  });

  const connect = (app: FastifyInstance, deviceId: string, password: string) => connectAs(app, deviceId, password);
  const kicksOf = (deviceId: string) => emqx.calls.filter((call) => call.method === 'DELETE' && call.clientId === deviceId);

  for (const scenario of ['key_revoked', 'device_disabled', 'device_deleted'] as const) {
    it(`${scenario} through one replica: the other denies within 1 s and the session is kicked once`, async () => {
      const deviceId = await seed.device(tenantId);
      const { key, keyId } = await seed.key(deviceId);
      // Both replicas hold the verification in memory.
      assert.equal(await connect(first, deviceId, key), 'allow');
      assert.equal(await connect(second, deviceId, key), 'allow');
      assert.equal(await connect(second, deviceId, key), 'allow');
      emqx.setClient(deviceId, true);

      if (scenario === 'key_revoked') await seed.query('UPDATE device_keys SET revoked_at = now() WHERE id = $1', [keyId]);
      if (scenario === 'device_disabled') await seed.query('UPDATE devices SET disabled = true WHERE id = $1', [deviceId]);
      if (scenario === 'device_deleted') await seed.query('DELETE FROM devices WHERE id = $1', [deviceId]);
      const startedAt = Date.now();
      // Both replicas act on the signal (the kick decision included) within 1 s.
      await untilApplied([first, second], scenario, () =>
        publishChange(ctx.config.redis.keyPrefix, {
          kind: scenario,
          device_id: deviceId,
          tenant_id: tenantId,
          ...(scenario === 'key_revoked' ? { key_id: keyId } : {}),
        }),
      1000);
      assert.ok(Date.now() - startedAt <= 1000);
      assert.equal(await connect(second, deviceId, key), 'deny');
      assert.equal(await connect(first, deviceId, key), 'deny');
      assert.equal(kicksOf(deviceId).length, 1);
      assert.ok(kicksOf(deviceId).every((call) => call.authorized));
    });
  }

  it('a rotation (no kick needed) drops cached entries but kicks nobody', async () => {
    const deviceId = await seed.device(tenantId);
    const { key } = await seed.key(deviceId);
    assert.equal(await connect(second, deviceId, key), 'allow');
    await untilApplied([first, second], 'keys_rotated', () =>
      publishChange(ctx.config.redis.keyPrefix, { kind: 'keys_rotated', device_id: deviceId, tenant_id: tenantId }),
    );
    assert.equal(kicksOf(deviceId).length, 0);
    assert.equal(await connect(second, deviceId, key), 'allow');
    const metrics = (await second.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /emqx_authn_total\{result="allow",reason="digest"\}/);
  });
});
