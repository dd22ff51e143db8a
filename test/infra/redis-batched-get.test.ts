import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { RedisConnection } from '../../src/infra/redis.js';
import { createBatchedGet } from '../../src/infra/redis-batched-get.js';
import { keySlot } from '../../src/infra/redis-slots.js';
import { useTestRedis } from '../helpers/redis.js';

describe('createBatchedGet', () => {
  const test = useTestRedis();

  it('reads the keys asked for in one turn with one MGET (one per hash slot on a cluster), a missing key as null', async () => {
    const { redis, prefix } = test;
    // Two hash tags: two slots on a cluster, where an MGET may only name keys of one.
    const [a, b, missing, c] = [`${prefix}{x}a`, `${prefix}{x}b`, `${prefix}{x}missing`, `${prefix}{y}c`];
    await Promise.all([redis.set(a, 'one'), redis.set(b, 'two'), redis.set(c, 'three')]);
    const mgets: string[][] = [];
    const counted = Object.create(redis) as RedisConnection;
    counted.mget = ((keys: string[]) => {
      mgets.push(keys);
      return redis.mget(keys);
    }) as RedisConnection['mget'];
    const get = createBatchedGet(counted);

    const values = await Promise.all([a, missing, b, a, c].map((key) => get(key)));

    assert.deepEqual(values, ['one', null, 'two', 'one', 'three']);
    const asked = [a, missing, b, c];
    const expected = redis.isCluster ? [asked.filter((key) => keySlot(key) === keySlot(a)), [c]] : [asked];
    assert.deepEqual(
      mgets.map((keys) => [...keys].sort()),
      expected.map((keys) => [...keys].sort()),
    );
  });

  it('rejects every read of the batch when Redis cannot be reached', async () => {
    const unreachable = new Redis('redis://127.0.0.1:1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    unreachable.on('error', () => undefined);
    try {
      const get = createBatchedGet(unreachable);
      const reads = await Promise.allSettled([get('x'), get('y')]);
      assert.deepEqual(
        reads.map((read) => read.status),
        ['rejected', 'rejected'],
      );
    } finally {
      unreachable.disconnect();
    }
  });
});
