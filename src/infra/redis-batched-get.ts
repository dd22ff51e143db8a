import type { RedisConnection } from './redis.js';
import { createBatchLoader, type BatchLoader } from '../lib/batch-loader.js';

/**
 * GET through a batch loader: the keys asked for in one turn of the event loop
 * are read with one MGET. Each Redis command costs the client far more than
 * each key of an MGET does, and a reconnect storm reads a few keys per CONNECT.
 * Resolves null for a missing key; rejects (every read of the batch) when
 * Redis is unreachable.
 */
export function createBatchedGet(redis: RedisConnection): BatchLoader<string> {
  return createBatchLoader(async (keys) => {
    const values = await redis.mget(keys);
    const found = new Map<string, string>();
    keys.forEach((key, index) => {
      const value = values[index];
      if (value !== null && value !== undefined) found.set(key, value);
    });
    return found;
  });
}
