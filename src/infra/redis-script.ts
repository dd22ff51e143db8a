import { createHash } from 'node:crypto';
import type { RedisConnection } from './redis.js';

export type RedisScript = (keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

const isNoScript = (error: unknown) => error instanceof Error && error.message.startsWith('NOSCRIPT');

/**
 * A Lua script. Scripts make read-compare-write sequences atomic across
 * replicas. `keyCount` fixes how many keys a call passes; 'any' lets each call
 * pass as many as it has. On a Redis Cluster the keys of one call must share
 * a hash slot (see redis-slots.ts).
 *
 * Sent as EVALSHA once Redis has the script, as EVAL until then and again
 * after a NOSCRIPT (a restarted node, a cluster node that has not run it
 * yet). Both are commands whose keys the client can find, so on a cluster it
 * routes each call, and pipelines calls, by their keys: scripts defined on
 * the client instead are grouped by their first argument, which for a
 * variable number of keys is that number, and a pipeline of such calls for
 * several nodes is refused.
 */
export function defineRedisScript(redis: RedisConnection, name: string, lua: string, keyCount: number | 'any'): RedisScript {
  const sha = createHash('sha1').update(lua).digest('hex');
  let loaded = false;
  return async (keys, args) => {
    if (keyCount !== 'any' && keys.length !== keyCount) throw new Error(`Redis script ${name} takes ${keyCount} keys, not ${keys.length}`);
    if (loaded) {
      try {
        return await redis.evalsha(sha, keys.length, ...keys, ...args);
      } catch (error) {
        if (!isNoScript(error)) throw error;
        loaded = false;
      }
    }
    const result = await redis.eval(lua, keys.length, ...keys, ...args);
    loaded = true;
    return result;
  };
}
