import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient } from '../../helpers/admin.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';
import { connectAs } from '../../helpers/emqx-auth.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { createPrivateRedis, type PrivateRedis } from '../../helpers/private-redis.js';
import { waitFor } from '../../helpers/wait.js';

/** The bound on a lost signal: the change log is read every second, plus the read itself. */
const CONVERGENCE_BOUND_MS = 1500;

async function metric(app: FastifyInstance, pattern: RegExp): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  return Number(pattern.exec(text)?.[1] ?? 0);
}
const pendingKicks = (app: FastifyInstance) => metric(app, /^devicelink_change_effects_pending\{effect="kick"\} (\d+)$/m);
const pendingCleanUps = (app: FastifyInstance) => metric(app, /^devicelink_change_effects_pending\{effect="clean_up"\} (\d+)$/m);
const oldestKickS = (app: FastifyInstance) => metric(app, /^devicelink_change_effects_oldest_pending_seconds\{effect="kick"\} ([\d.]+)$/m);

describe('a change holds when its signals are lost', () => {
  let redis: PrivateRedis;
  let emqx: EmqxSim;
  let ctx: TestContext;
  let seed: DeviceSeeder;
  let first: FastifyInstance;
  let second: FastifyInstance;
  let tenantId: string;

  before(async () => {
    redis = await createPrivateRedis();
    await redis.start();
    emqx = await startTestEmqx();
    ctx = await createTestContext({ REDIS_URL: redis.url, DUPLICATE_CLIENT_POLICY: 'takeover', ...emqxEnv(emqx) });
    [first, second] = await Promise.all([ctx.app(), ctx.app()]);
    seed = createDeviceSeeder(ctx.db.url);
    tenantId = await seed.tenant();
  });
  after(async () => {
    await seed.close();
    await ctx.close();
    await emqx.close();
    await redis.stop();
  });

  const kicked = (deviceId: string) => emqx.calls.some((call) => call.method === 'DELETE' && call.clientId === deviceId);

  it('Redis down around a disable: within the bound no replica answers allow, and Redis is cleaned once it is back', async () => {
    const deviceId = await seed.device(tenantId);
    const { key } = await seed.key(deviceId);
    for (const app of [first, second]) assert.equal(await connectAs(app, deviceId, key), 'allow');

    await redis.stop();
    // Committed in Postgres; the announcement over Redis is lost.
    const disabledAt = Date.now();
    assert.equal((await adminClient(first).patch(`/v1/devices/${deviceId}`, { disabled: true })).statusCode, 200);
    // Every replica reads the change log itself: by the bound, and from then on, nothing is allowed.
    await sleep(Math.max(0, disabledAt + CONVERGENCE_BOUND_MS - Date.now()));
    for (let round = 0; round < 10; round++) {
      for (const app of [first, second]) assert.notEqual(await connectAs(app, deviceId, key), 'allow', `round ${round}`);
      await sleep(100);
    }
    assert.ok((await pendingCleanUps(first)) >= 1, 'the Redis clean-up waits for Redis');

    await redis.start();
    await waitFor(async () => (await pendingCleanUps(first)) === 0, 15_000);
    for (const app of [first, second]) assert.equal(await connectAs(app, deviceId, key), 'deny');
  });

  it("EMQX's REST API down for 10 s around a revocation: the session ends once it is back, and the wait shows in the metrics", async () => {
    const deviceId = await seed.device(tenantId);
    const { key, keyId } = await seed.key(deviceId);
    assert.equal(await connectAs(second, deviceId, key), 'allow');
    await emqx.connect(deviceId);

    emqx.failWith(503);
    assert.equal((await adminClient(first).delete(`/v1/devices/${deviceId}/keys/${keyId}`)).statusCode, 204);
    // Refused at once by the replica that revoked it, by the other within the bound (its announcement may come after this request).
    assert.equal(await connectAs(first, deviceId, key), 'deny');
    await waitFor(async () => (await connectAs(second, deviceId, key)) === 'deny', CONVERGENCE_BOUND_MS);
    await sleep(10_000);
    assert.equal(await pendingKicks(first), 1);
    assert.ok((await oldestKickS(second)) >= 9, 'the pending kick is about 10 s old');
    assert.ok(
      emqx.calls.filter((call) => call.method === 'DELETE' && call.clientId === deviceId).length >= 3,
      'the kick was tried again and again meanwhile',
    );

    emqx.failWith(null);
    const back = Date.now();
    await waitFor(async () => (await pendingKicks(first)) === 0, 12_000);
    assert.ok(Date.now() - back <= 11_000);
    assert.equal(await metric(first, /^devicelink_emqx_kicks_total\{reason="key_revoked",result="kicked"\} (\d+)$/m) + (await metric(second, /^devicelink_emqx_kicks_total\{reason="key_revoked",result="kicked"\} (\d+)$/m)), 1);
  });

  it('a kick outlives the replicas: one started after both stopped ends the session', async () => {
    const deviceId = await seed.device(tenantId);
    const { key } = await seed.key(deviceId);
    assert.equal(await connectAs(first, deviceId, key), 'allow');
    await emqx.connect(deviceId);

    emqx.failWith(503);
    assert.equal((await adminClient(first).patch(`/v1/devices/${deviceId}`, { disabled: true })).statusCode, 200);
    await sleep(2000);
    await Promise.all([first.close(), second.close()]);
    emqx.failWith(null);
    const callsBefore = emqx.calls.length;
    await sleep(500);
    assert.equal(emqx.calls.length, callsBefore, 'nobody is running');

    [first, second] = await Promise.all([ctx.app(), ctx.app()]);
    await waitFor(() => kicked(deviceId) && emqx.calls.slice(callsBefore).some((call) => call.method === 'DELETE' && call.clientId === deviceId), 12_000);
    await waitFor(async () => (await pendingKicks(first)) === 0, 5000);
  });
});
