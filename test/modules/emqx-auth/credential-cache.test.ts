import assert from 'node:assert/strict';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { createCredentialCache, credentialCacheKeys, type VerifiedCredential } from '../../../src/modules/emqx-auth/credential-cache.js';
import { useTestRedis } from '../../helpers/redis.js';

describe('the verified-credential cache in Redis', () => {
  const test = useTestRedis();
  /** One replica's cache; replicas share Redis and nothing else. */
  const replica = () => createCredentialCache({ redis: test.redis, keyPrefix: test.prefix, secret: 'cache-secret-0123456789abcdef', clock: Date.now, ttlMs: 60_000 });
  const credential = (deviceId: string): VerifiedCredential => ({ deviceId, tenantId: 'tenant', keyId: `key-${deviceId}`, notAfter: null, version: '7' });

  it('writes the entries stored in one turn, each readable by another replica', async () => {
    const writer = replica();
    const devices = [randomUUID(), randomUUID(), randomUUID()];
    await Promise.all(devices.map((deviceId) => writer.store(writer.keyFor(deviceId, 'secret'), credential(deviceId), writer.generation(deviceId))));
    const reader = replica();
    for (const deviceId of devices) assert.deepEqual(await reader.fetch(reader.keyFor(deviceId, 'secret'), deviceId), credential(deviceId));
  });

  it('does not write an entry whose device was invalidated before its write went out; the others of its turn are written', async () => {
    const writer = replica();
    const [condemned, kept] = [randomUUID(), randomUUID()];
    const stored = [condemned, kept].map((deviceId) => writer.store(writer.keyFor(deviceId, 'secret'), credential(deviceId), writer.generation(deviceId)));
    writer.forgetDevice(condemned);
    await Promise.all([writer.deleteStored(condemned), ...stored]);
    const reader = replica();
    assert.equal(await reader.fetch(reader.keyFor(condemned, 'secret'), condemned), undefined);
    assert.equal(writer.peek(writer.keyFor(condemned, 'secret')), undefined, 'nor kept in memory');
    assert.deepEqual(await reader.fetch(reader.keyFor(kept, 'secret'), kept), credential(kept));
  });

  it('deletes the entries of one key, or of the whole device, and leaves other devices alone', async () => {
    const cache = replica();
    const [deviceId, other] = [randomUUID(), randomUUID()];
    const entries = [
      { deviceId, secret: 'first', credential: credential(deviceId) },
      { deviceId, secret: 'second', credential: { ...credential(deviceId), keyId: 'key-second' } },
      { deviceId, secret: 'psk', credential: { ...credential(deviceId), keyId: null } },
      { deviceId: other, secret: 'first', credential: credential(other) },
    ];
    await Promise.all(entries.map(({ deviceId: id, secret, credential: c }) => cache.store(cache.keyFor(id, secret), c, cache.generation(id))));
    const stored = async () => {
      const reader = replica();
      const found = await Promise.all(entries.map(({ deviceId: id, secret }) => reader.fetch(reader.keyFor(id, secret), id)));
      return found.map((entry) => entry !== undefined);
    };
    assert.deepEqual(await stored(), [true, true, true, true]);
    await cache.deleteStored(deviceId, 'key-second');
    assert.deepEqual(await stored(), [true, false, true, true], 'only the revoked key');
    await cache.deleteStored(deviceId);
    assert.deepEqual(await stored(), [false, false, false, true], 'the whole device');
    assert.equal(await test.redis.exists(credentialCacheKeys(test.redis, test.prefix).index(deviceId)), 0, 'its index too');
  });

  it('names an entry in Redis by the HMAC of device id and secret under the cache secret, and in memory by their SHA-256 only', async () => {
    const cache = replica();
    const deviceId = randomUUID();
    const key = cache.keyFor(deviceId, 'a-chosen-psk');
    assert.equal(key.stored, createHmac('sha256', 'cache-secret-0123456789abcdef').update(`${deviceId}\0a-chosen-psk`).digest('base64url'));
    assert.equal(key.memory, createHash('sha256').update(`${deviceId}\0a-chosen-psk`).digest('base64url'));
    // A key that reaches a log shows its names, never the secret it was made from.
    for (const shown of [inspect(key, { showHidden: true, getters: true, depth: 5 }), JSON.stringify(key)]) {
      assert.ok(!shown.includes('a-chosen-psk'), shown);
    }
    await cache.store(key, credential(deviceId), cache.generation(deviceId));
    const keys = credentialCacheKeys(test.redis, test.prefix);
    assert.equal(await test.redis.exists(keys.entry(key.stored, deviceId)), 1, 'the entry is named by the HMAC');
    assert.equal(await test.redis.exists(keys.entry(key.memory, deviceId)), 0, 'not by the unkeyed digest');
    const index = await test.redis.hgetall(keys.index(deviceId));
    const stored = [await test.redis.get(keys.entry(key.stored, deviceId)), ...Object.keys(index), ...Object.values(index)].join(' ');
    assert.ok(!stored.includes(key.memory), 'the unkeyed digest never reaches Redis');
    assert.deepEqual(cache.peek(cache.keyFor(deviceId, 'a-chosen-psk')), credential(deviceId));
    assert.equal(cache.peek(cache.keyFor(deviceId, 'another-psk')), undefined);
  });

  it('reads an entry written without a credential version as a miss: it cannot be checked against the device', async () => {
    const cache = replica();
    const deviceId = randomUUID();
    const cacheKey = cache.keyFor(deviceId, 'secret');
    const unversioned = { d: deviceId, t: 'tenant', k: 'key-1', n: null, x: Date.now() + 60_000 };
    await test.redis.set(credentialCacheKeys(test.redis, test.prefix).entry(cacheKey.stored, deviceId), JSON.stringify(unversioned), 'PX', 60_000);
    assert.equal(await cache.fetch(cacheKey, deviceId), undefined);
  });
});
