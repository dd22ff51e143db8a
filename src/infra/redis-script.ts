import type { RedisConnection } from './redis.js';

export type RedisScript = (keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

/**
 * A Lua script run with EVALSHA (ioredis loads it on first use and after a
 * Redis restart). Scripts make read-compare-write sequences atomic across
 * replicas. `keyCount` fixes how many of the keys a call passes; 'any' lets
 * each call pass as many as it has.
 */
export function defineRedisScript(redis: RedisConnection, name: string, lua: string, keyCount: number | 'any'): RedisScript {
  redis.defineCommand(name, keyCount === 'any' ? { lua } : { numberOfKeys: keyCount, lua });
  const commands = redis as unknown as Record<string, ((...args: (string | number)[]) => Promise<unknown>) | undefined>;
  return (keys, args) => {
    const command = commands[name];
    if (!command) return Promise.reject(new Error(`Redis script ${name} is not defined`));
    return keyCount === 'any' ? command.call(redis, keys.length, ...keys, ...args) : command.call(redis, ...keys, ...args);
  };
}
