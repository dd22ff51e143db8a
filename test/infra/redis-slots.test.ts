import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RedisConnection } from '../../src/infra/redis.js';
import { bySlot, keySlot, perSlot, slotTag } from '../../src/infra/redis-slots.js';
import { credentialCacheKeys } from '../../src/modules/emqx-auth/credential-cache.js';
import { messageDedupKeys } from '../../src/modules/telemetry/message-dedup.js';

/** What the slot helpers ask of a connection: whether it is a cluster. */
const cluster = { isCluster: true } as RedisConnection;
const single = { isCluster: false } as RedisConnection;

describe('hash slots', () => {
  it('computes slots as Redis Cluster does, braces first', () => {
    // Values from the Redis Cluster specification and CLUSTER KEYSLOT.
    assert.equal(keySlot('123456789'), 12739);
    assert.equal(keySlot('foo'), 12182);
    assert.equal(keySlot('{user1000}.following'), keySlot('{user1000}.followers'));
    assert.notEqual(keySlot('foo{}{bar}'), keySlot('bar'), 'empty first braces: the whole key is hashed');
    assert.equal(keySlot('foo{{bar}}zap'), keySlot('{bar'), 'the first braces hold the tag');
  });

  it('tags ids on a cluster only, so a single node keeps the names it had', () => {
    assert.equal(slotTag(cluster, 'd-1'), '{d-1}');
    assert.equal(slotTag(single, 'd-1'), 'd-1');
  });

  it('groups a batch per slot on a cluster, keeping the order within a group; one group on a single node', () => {
    const keys = ['a{1}', 'b{2}', 'c{1}', 'd{2}', 'e{3}'];
    assert.deepEqual(bySlot(single, keys, (key) => key), [keys]);
    assert.deepEqual(bySlot(cluster, keys, (key) => key), [['a{1}', 'c{1}'], ['b{2}', 'd{2}'], ['e{3}']]);
    assert.deepEqual(bySlot(cluster, [], (key) => key), []);
  });

  it('fails only the items of the group whose call failed, and answers the others in their places', async () => {
    const keys = ['a{1}', 'b{2}', 'c{1}'];
    const outcomes = await perSlot(cluster, keys, (key) => key, async (group) => {
      if (group.includes('b{2}')) throw new Error('node down');
      return group.map((key) => key.toUpperCase());
    });
    assert.deepEqual(
      outcomes.map((outcome) => (outcome.ok ? outcome.value : (outcome.error as Error).message)),
      ['A{1}', 'node down', 'C{1}'],
    );
    const wrongCount = await perSlot(single, keys, (key) => key, async () => ['only one']);
    assert.ok(wrongCount.every((outcome) => !outcome.ok));
  });

  it('keeps the keys one script or transaction uses together in one slot on a cluster', () => {
    const deviceId = '1d0c4e8e-7a7c-4f3a-9a51-1f0c1d2e3f40';
    const credentials = credentialCacheKeys(cluster, 'dlm:');
    assert.equal(keySlot(credentials.entry('a1b2', deviceId)), keySlot(credentials.index(deviceId)));
    assert.equal(credentials.entry('a1b2', deviceId), `dlm:authn:cred:{${deviceId}}:a1b2`);
    assert.equal(credentialCacheKeys(single, 'dlm:').entry('a1b2', deviceId), 'dlm:authn:cred:a1b2', 'unchanged on a single node');

    const dedup = messageDedupKeys(cluster, 'dlm:');
    const shard = dedup.shardOf(`${deviceId}:m1`);
    assert.equal(new Set([100, 101, 95].map((bucket) => keySlot(dedup.bucketKey(shard, bucket)))).size, 1, 'the buckets of a shard');
    assert.equal(new Set(dedup.bucketKeys(100).map(keySlot)).size, 16, 'the shards of a bucket spread over 16 slots');
    assert.deepEqual(messageDedupKeys(single, 'dlm:').bucketKeys(100), ['dlm:ingest:seen:100']);
  });
});
