import { once } from 'node:events';
import { after, before } from 'node:test';
import { Cluster, type Redis } from 'ioredis';
import { createRedis, type RedisClient, type RedisConnection, type RedisSettings } from '../../src/infra/redis.js';
import { testConfig, uniqueTag } from './env.js';

/** The shared test Redis as the apps reach it (whatever its topology, see TEST_REDIS_ENV), under `keyPrefix`. */
export function testRedisSettings(keyPrefix = ''): RedisSettings {
  return { ...testConfig('redis-helper', 'postgres://127.0.0.1/unused').redis, keyPrefix };
}

/** A client made as the service makes its own: of the shared test Redis, or of the Redis `settings` name. */
export function connectRedis(settings: RedisSettings = testRedisSettings()): RedisClient {
  return createRedis(settings, { warn: () => undefined, info: () => undefined });
}

/** The processes that hold keys: every primary of a cluster, or the one node. */
async function primaries(redis: RedisConnection): Promise<Redis[]> {
  if (!(redis instanceof Cluster)) return [redis];
  if (redis.status !== 'ready') await once(redis, 'ready', { signal: AbortSignal.timeout(10_000) });
  return redis.nodes('master');
}

/** Every key under `prefix` (SCAN, on each primary of a cluster). */
export async function keysUnder(redis: RedisConnection, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for (const node of await primaries(redis)) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
  }
  return keys;
}

/** Deletes every key under `prefix`, a command per key: on a cluster they may all be in slots of their own. */
export async function deleteKeysUnder(redis: RedisConnection, prefix: string): Promise<void> {
  const keys = await keysUnder(redis, prefix);
  await Promise.all(keys.map((key) => redis.unlink(key)));
}

/**
 * A connection to the shared test Redis for the enclosing suite and a key
 * prefix of its own; every key under the prefix is deleted after the suite.
 */
export function useTestRedis(): { readonly redis: RedisConnection; readonly prefix: string } {
  const prefix = `t:${uniqueTag()}:`;
  let client: RedisClient | undefined;
  before(() => {
    client = connectRedis();
  });
  after(async () => {
    if (!client) return;
    await deleteKeysUnder(client.redis, prefix);
    await client.close();
  });
  return {
    get redis() {
      if (!client) throw new Error('useTestRedis: the connection opens in before()');
      return client.redis;
    },
    prefix,
  };
}
