import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { publishChange, untilApplied } from '../../helpers/change-signals.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';
import { connectAs } from '../../helpers/emqx-auth.js';
import { TEST_KEY_DIGEST_SECRET } from '../../helpers/env.js';

const OLD_SECRET = 'previous-key-digest-secret-0123456789abcdef';

describe('API keys checked against a keyed digest', () => {
  let ctx: TestContext;
  let seed: DeviceSeeder;
  let tenantId: string;
  let app: FastifyInstance;
  /** KEY_DIGEST_SECRET rotated: OLD_SECRET is still tried second. */
  let rotating: FastifyInstance;
  let peer = 0;

  before(async () => {
    ctx = await createTestContext({ DUPLICATE_CLIENT_POLICY: 'takeover' });
    seed = createDeviceSeeder(ctx.db.url);
    tenantId = await seed.tenant();
    app = await ctx.app();
    rotating = await ctx.app({}, { KEY_DIGEST_SECRET_PREVIOUS: OLD_SECRET });
  });
  after(async () => {
    await seed.close();
    await ctx.close();
  });

  /** A fresh peer per attempt, so the failure throttle of one check never decides another. */
  const connect = (target: FastifyInstance, deviceId: string, password: string) =>
    connectAs(target, deviceId, password, `10.18.${Math.floor(++peer / 250)}.${peer % 250}`);
  const stored = async (keyId: string) =>
    (await seed.query('SELECT scheme, hash FROM device_keys WHERE id = $1', [keyId])).rows[0] as { scheme: string; hash: string };
  /** Drops the device's cached verifications on `apps` (as a key rotation does), so their next connect checks the key again. */
  const dropCached = (apps: FastifyInstance[], deviceId: string) =>
    untilApplied(apps, 'keys_rotated', () => publishChange(ctx, { kind: 'keys_rotated', device_id: deviceId, tenant_id: tenantId }));
  const digestOf = (secret: string, key: string) => createHmac('sha256', secret).update(key).digest('base64url');
  const counter = async (target: FastifyInstance, pattern: RegExp) =>
    Number(pattern.exec((await target.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? 0);

  it('allows the right key, verified without argon2', async () => {
    const deviceId = await seed.device(tenantId);
    const { key } = await seed.key(deviceId);
    const digestAllows = /^devicelink_authn_total\{result="allow",reason="digest"\} (\d+)$/m;
    const argon2Verifies = /^devicelink_argon2_verify_duration_seconds_count (\d+)$/m;
    const before = [await counter(app, digestAllows), await counter(app, argon2Verifies)];
    assert.equal(await connect(app, deviceId, key), 'allow');
    assert.deepEqual([await counter(app, digestAllows), await counter(app, argon2Verifies)], [(before[0] ?? 0) + 1, before[1]]);
  });

  it('denies a wrong secret behind a real key id, a key of another device, a revoked and an expired key', async () => {
    const deviceId = await seed.device(tenantId);
    const other = await seed.device(tenantId);
    const { key } = await seed.key(deviceId);
    const othersKey = await seed.key(other);
    const revoked = await seed.key(deviceId, { revoked: true });
    const expired = await seed.key(deviceId, { notAfter: new Date(Date.now() - 1000) });
    const secret = key.slice(-43);
    const wrongSecret = `${key.slice(0, -43)}${secret.startsWith('A') ? 'B' : 'A'}${secret.slice(1)}`;
    assert.equal(await connect(app, deviceId, wrongSecret), 'deny');
    assert.equal(await connect(app, deviceId, othersKey.key), 'deny');
    assert.equal(await connect(app, deviceId, revoked.key), 'deny');
    assert.equal(await connect(app, deviceId, expired.key), 'deny');
    assert.equal(await connect(app, deviceId, key), 'allow');
  });

  it('answers a burst of CONNECTs for many devices, whose devices and keys are looked up together, each on its own merits', async () => {
    const fresh = await ctx.app();
    const devices = await Promise.all(
      Array.from({ length: 24 }, async () => {
        const deviceId = await seed.device(tenantId);
        return { deviceId, key: (await seed.key(deviceId)).key };
      }),
    );
    const unknownKeyId = (key: string) => `sk_live_${'a'.repeat(12)}${key.slice(-44)}`;
    const attempts = devices.map(({ deviceId, key }, index) => {
      const other = devices[(index + 1) % devices.length]!.key;
      const [password, expected] = (
        [
          [key, 'allow'],
          [`${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`, 'deny'],
          [other, 'deny'],
          [unknownKeyId(key), 'deny'],
        ] as const
      )[index % 4]!;
      return { deviceId, password, expected };
    });
    attempts.push({ deviceId: randomUUID(), password: devices[0]!.key, expected: 'deny' });
    const results = await Promise.all(attempts.map(({ deviceId, password }) => connect(fresh, deviceId, password)));
    assert.deepEqual(
      results,
      attempts.map((attempt) => attempt.expected),
    );
  });

  it('verifies a key stored before digests with argon2 once, then stores it as a digest', async () => {
    const deviceId = await seed.device(tenantId);
    const { key, keyId } = await seed.key(deviceId, { storage: 'argon2id' });
    assert.equal((await stored(keyId)).scheme, 'argon2id');
    assert.equal(await connect(app, deviceId, `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`), 'deny');
    assert.equal((await stored(keyId)).scheme, 'argon2id', 'a wrong secret changes nothing');

    assert.equal(await connect(app, deviceId, key), 'allow');
    assert.deepEqual(await stored(keyId), { scheme: 'hmac-sha256', hash: digestOf(TEST_KEY_DIGEST_SECRET, key) });
    assert.ok((await counter(app, /^devicelink_api_keys_restored_total\{from="argon2id",result="ok"\} (\d+)$/m)) >= 1);
    // Another replica, with the cached verification dropped, checks the digest now.
    const fresh = await ctx.app();
    await dropCached([app, fresh], deviceId);
    assert.equal(await connect(fresh, deviceId, key), 'allow');
    assert.equal(await counter(fresh, /^devicelink_authn_total\{result="allow",reason="digest"\} (\d+)$/m), 1);
  });

  it('while the digest secret rotates, allows a key digested under the previous one and stores it under the current one', async () => {
    const deviceId = await seed.device(tenantId);
    const { key, keyId } = await seed.key(deviceId, { storage: { digestSecret: OLD_SECRET } });
    // Without the previous secret configured the old digest matches nothing.
    assert.equal(await connect(app, deviceId, key), 'deny');
    assert.equal((await stored(keyId)).hash, digestOf(OLD_SECRET, key));

    assert.equal(await connect(rotating, deviceId, key), 'allow');
    assert.deepEqual(await stored(keyId), { scheme: 'hmac-sha256', hash: digestOf(TEST_KEY_DIGEST_SECRET, key) });
    assert.ok((await counter(rotating, /^devicelink_api_keys_restored_total\{from="previous_secret",result="ok"\} (\d+)$/m)) >= 1);
    // Re-stored: a replica that knows only the current secret allows it too.
    await dropCached([app, rotating], deviceId);
    assert.equal(await connect(app, deviceId, key), 'allow');
  });

  it('refuses a key whose digest matches neither secret, and an unknown device, also while rotating', async () => {
    const deviceId = await seed.device(tenantId);
    const { key } = await seed.key(deviceId, { storage: { digestSecret: 'some-other-digest-secret-0123456789abcdef' } });
    assert.equal(await connect(rotating, deviceId, key), 'deny');
    assert.equal(await connect(rotating, randomUUID(), key), 'deny');
  });
});
