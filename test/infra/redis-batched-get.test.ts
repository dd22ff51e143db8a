import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createBatchedGet } from '../../src/infra/redis-batched-get.js';
import { useTestRedis } from '../helpers/redis.js';

describe('createBatchedGet', () => {
  const test = useTestRedis();

  it('reads the keys asked for in one turn with one MGET, a missing key as null', async () => {
    const { redis, prefix } = test;
    await redis.set(`${prefix}a`, 'one');
    await redis.set(`${prefix}b`, 'two');
    const mgets: unknown[][] = [];
    const counted = Object.create(redis) as Redis;
    counted.mget = ((...args: unknown[]) => {
      mgets.push(args);
      return redis.mget(...(args as [string[]]));
    }) as Redis['mget'];
    const get = createBatchedGet(counted);

    const values = await Promise.all(['a', 'missing', 'b', 'a'].map((key) => get(`${prefix}${key}`)));

    assert.deepEqual(values, ['one', null, 'two', 'one']);
    assert.deepEqual(mgets, [[[`${prefix}a`, `${prefix}missing`, `${prefix}b`]]]);
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
