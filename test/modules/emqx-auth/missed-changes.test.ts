import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient } from '../../helpers/admin.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';
import { connectAs } from '../../helpers/emqx-auth.js';
import { createPrivateRedis, type PrivateRedis } from '../../helpers/private-redis.js';
import { waitFor } from '../../helpers/wait.js';

describe('change signals missed while Redis was away', () => {
  let redis: PrivateRedis;
  let ctx: TestContext;
  let seed: DeviceSeeder;
  let first: FastifyInstance;
  let second: FastifyInstance;
  let tenantId: string;

  before(async () => {
    redis = await createPrivateRedis();
    await redis.start();
    ctx = await createTestContext({ REDIS_URL: redis.url, DUPLICATE_CLIENT_POLICY: 'takeover' });
    [first, second] = await Promise.all([ctx.app(), ctx.app()]);
    seed = createDeviceSeeder(ctx.db.url);
    tenantId = await seed.tenant();
  });
  after(async () => {
    await seed.close();
    await ctx.close();
    await redis.stop();
  });

  const connect = (app: FastifyInstance, deviceId: string, password: string) => connectAs(app, deviceId, password, '10.5.0.1');
  const resubscribed = async (app: FastifyInstance) =>
    Number(/^credential_changes_resubscribed_total (\d+)$/m.exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? 0);

  it('a replica drops what it holds in memory once its subscription is back, so a key revoked meanwhile is refused', async () => {
    const deviceId = await seed.device(tenantId);
    const { key, keyId } = await seed.key(deviceId);
    assert.equal(await connect(second, deviceId, key), 'allow');

    await redis.stop();
    // Committed in Postgres; its change signal cannot reach anyone.
    assert.equal((await adminClient(first).delete(`/v1/devices/${deviceId}/keys/${keyId}`)).statusCode, 204);
    assert.equal(await connect(second, deviceId, key), 'allow', 'verified in memory, and nobody told the replica');
    await redis.start();

    await waitFor(async () => (await resubscribed(second)) > 0, 15_000);
    assert.equal(await connect(second, deviceId, key), 'deny');
  });
});
