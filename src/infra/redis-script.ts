import type { Redis } from 'ioredis';

export type RedisScript = (keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

/**
 * A Lua script run with EVALSHA (ioredis loads it on first use and after a
 * Redis restart). Scripts make read-compare-write sequences atomic across replicas.
 */
export function defineRedisScript(redis: Redis, name: string, lua: string, keyCount: number): RedisScript {
  redis.defineCommand(name, { numberOfKeys: keyCount, lua });
  const commands = redis as unknown as Record<string, ((...args: (string | number)[]) => Promise<unknown>) | undefined>;
  return (keys, args) => {
    const command = commands[name];
    if (!command) return Promise.reject(new Error(`Redis script ${name} is not defined`));
    return command.call(redis, ...keys, ...args);
  };
}
