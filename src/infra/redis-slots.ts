import calculateSlot from 'cluster-key-slot';
import type { Settled } from '../lib/turn-batcher.js';
import type { RedisConnection } from './redis.js';

/**
 * The part of a key that keeps the keys of one thing (a device, an address)
 * together. A Redis Cluster places a key by the hash of what its first braces
 * hold, and a script, MULTI or multi-key command may only use keys of one
 * slot: keys used together carry the same `{id}`. A single node (or the
 * primary Sentinels follow) holds every key, so there the id stays as it is
 * and the keys keep the names earlier versions gave them.
 */
export function slotTag(redis: RedisConnection, id: string): string {
  return redis.isCluster ? `{${id}}` : id;
}

/** The hash slot of a key on a Redis Cluster (0–16383). */
export const keySlot = (key: string): number => calculateSlot(key);

/**
 * Items in the groups one command may carry: all of them together on a
 * single node, so a batch stays one call however many keys it has; one
 * group per hash slot on a cluster. Items keep their order within a group.
 * `keyOf` names an item's key (its first, when its keys share a tag).
 */
export function bySlot<T>(redis: RedisConnection, items: readonly T[], keyOf: (item: T) => string): T[][] {
  if (items.length === 0) return [];
  if (!redis.isCluster) return [[...items]];
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const slot = calculateSlot(keyOf(item));
    const group = groups.get(slot);
    if (group) group.push(item);
    else groups.set(slot, [item]);
  }
  return [...groups.values()];
}

/**
 * `run` once per group of `bySlot`, the groups side by side; each item gets
 * the answer `run` gave it (one per item of the group, in order), or the
 * error of its group: a cluster node that fails fails only the keys it holds.
 */
export async function perSlot<T, R>(
  redis: RedisConnection,
  items: readonly T[],
  keyOf: (item: T) => string,
  run: (group: T[]) => Promise<readonly R[]>,
): Promise<Settled<R>[]> {
  const indexed = items.map((item, index) => ({ item, index }));
  const outcomes: Settled<R>[] = [];
  await Promise.all(
    bySlot(redis, indexed, ({ item }) => keyOf(item)).map(async (group) => {
      try {
        const answers = await run(group.map(({ item }) => item));
        if (answers.length !== group.length) throw new Error(`expected ${group.length} answers from Redis, got ${answers.length}`);
        group.forEach(({ index }, n) => (outcomes[index] = { ok: true, value: answers[n] as R }));
      } catch (error) {
        for (const { index } of group) outcomes[index] = { ok: false, error };
      }
    }),
  );
  return outcomes;
}
