import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';
import { connectAs } from '../../helpers/emqx-auth.js';

describe('authn with Postgres or Redis unreachable', () => {
  let ctx: TestContext;
  let seed: DeviceSeeder;
  let tenantId: string;

  before(async () => {
    ctx = await createTestContext({ DUPLICATE_CLIENT_POLICY: 'takeover' });
    seed = createDeviceSeeder(ctx.db.url);
    tenantId = await seed.tenant();
  });
  after(async () => {
    await seed.close();
    await ctx.close();
  });

  const connect = (app: FastifyInstance, deviceId: string, password: string) => connectAs(app, deviceId, password, '10.8.0.1');

  for (const outage of ['postgres', 'redis'] as const) {
    it(`${outage} down: verified credentials keep working, nothing unverified is allowed`, async () => {
      // The app's own clients, so the test can take one away mid-run.
      const infra = ctx.infra();
      const app = await ctx.app({ infra });
      const cachedDevice = await seed.device(tenantId);
      const cached = await seed.key(cachedDevice);
      const otherKey = await seed.key(cachedDevice);
      const psk = await seed.psk(cachedDevice);
      const uncachedDevice = await seed.device(tenantId);
      const uncached = await seed.key(uncachedDevice);
      assert.equal(await connect(app, cachedDevice, cached.key), 'allow');

      if (outage === 'postgres') await infra.postgres.pool.end();
      else infra.redis.redis.disconnect();

      assert.equal(await connect(app, cachedDevice, cached.key), 'allow', 'verified before the outage');
      assert.equal(await connect(app, uncachedDevice, uncached.key), 'ignore', 'never verified');
      assert.equal(await connect(app, cachedDevice, otherKey.key), 'ignore', 'another key of a cached device');
      assert.equal(await connect(app, cachedDevice, psk), 'ignore', 'the PSK of a cached device');
      const wrong = await connect(app, cachedDevice, `${cached.key.slice(0, -1)}${cached.key.endsWith('A') ? 'B' : 'A'}`);
      assert.notEqual(wrong, 'allow');
    });
  }

  it('answers a PSK ignore at once, and counts it, when the hashing queue would make it wait too long; keys never wait', async () => {
    const app = await ctx.app({}, { ARGON2_CONCURRENCY: '1', ARGON2_MAX_WAIT_MS: '50' });
    const devices = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const deviceId = await seed.device(tenantId);
        return { deviceId, psk: await seed.psk(deviceId), key: (await seed.key(deviceId)).key };
      }),
    );
    const results = await Promise.all(devices.map(({ deviceId, psk }) => connect(app, deviceId, psk)));
    assert.ok(results.includes('ignore'), results.join());
    assert.ok(!results.includes('deny'), results.join());
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /devicelink_argon2_queue_rejected_total [1-9]/);
    assert.match(metrics, /devicelink_authn_total\{result="ignore",reason="hash_queue_full"\} [1-9]/);
    // API keys are checked against a keyed digest: a full hashing queue does not concern them.
    const keyResults = await Promise.all(devices.map(({ deviceId, key }) => connect(app, deviceId, key)));
    assert.deepEqual(new Set(keyResults), new Set(['allow']));
  });
});
