import { after, before } from 'node:test';
import { Redis } from 'ioredis';
import { TEST_REDIS_URL, uniqueTag } from './env.js';

/**
 * A Redis connection for the enclosing suite and a key prefix of its own;
 * every key under the prefix is deleted after the suite.
 */
export function useTestRedis(): { readonly redis: Redis; readonly prefix: string } {
  const prefix = `t:${uniqueTag()}:`;
  let redis: Redis | undefined;
  before(() => {
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    if (!redis) return;
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });
  return {
    get redis() {
      if (!redis) throw new Error('useTestRedis: the connection opens in before()');
      return redis;
    },
    prefix,
  };
}
