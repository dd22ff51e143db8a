import { createBatchLoader, type BatchLoader } from '../lib/batch-loader.js';
import type { RedisConnection } from './redis.js';
import { perSlot } from './redis-slots.js';

/** A key's value (null when missing), or why it could not be read. */
type Read = { value: string | null } | { error: unknown };

/**
 * GET through a batch loader: the keys asked for in one turn of the event loop
 * are read with one MGET. Each Redis command costs the client far more than
 * each key of an MGET does, and a reconnect storm reads a few keys per CONNECT.
 * On a Redis Cluster an MGET may only name keys of one hash slot, so the batch
 * becomes one MGET per slot, sent side by side.
 * Resolves null for a missing key; rejects when Redis (on a cluster, the node
 * holding the key) is unreachable.
 */
export function createBatchedGet(redis: RedisConnection): (key: string) => Promise<string | null> {
  const load: BatchLoader<Read> = createBatchLoader(async (keys) => {
    const outcomes = await perSlot(redis, keys, (key) => key, (group) => redis.mget(group));
    const found = new Map<string, Read>();
    keys.forEach((key, index) => {
      const outcome = outcomes[index];
      if (outcome) found.set(key, outcome.ok ? { value: outcome.value } : { error: outcome.error });
    });
    return found;
  });
  return async (key) => {
    const read = await load(key);
    if (read && 'error' in read) throw read.error;
    return read?.value ?? null;
  };
}
