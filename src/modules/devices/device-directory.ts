import { LRUCache } from 'lru-cache';
import type { Clock } from '../../lib/clock.js';
import type { DeviceRecord } from './device-repository.js';

export interface DeviceDirectory {
  /**
   * The device, or null when it does not exist. Served from memory when
   * cached; otherwise one load shared by concurrent callers. Rejects when
   * Postgres is unreachable and nothing (not even an expired entry) is cached.
   */
  get(deviceId: string): Promise<DeviceRecord | null>;
  /** The cached record without touching Postgres (undefined = not cached). */
  peek(deviceId: string): DeviceRecord | null | undefined;
  /** Reads the device from Postgres now, whatever is cached or being loaded, and caches it. Rejects when Postgres is unreachable. */
  refresh(deviceId: string): Promise<DeviceRecord | null>;
  /** Forgets the device (the registry changed it); a load under way is not cached either. */
  invalidate(deviceId: string): void;
  /** Forgets every device (change signals may have been missed); loads under way are not cached. */
  clear(): void;
}

export interface DeviceDirectoryOptions {
  load(deviceId: string): Promise<DeviceRecord | null>;
  clock: Clock;
  /** How long a found device is trusted without a change signal. */
  ttlMs?: number;
  /** How long "no such device" is remembered (kept short: a device may be created). */
  negativeTtlMs?: number;
  maxEntries?: number;
}

/** What the cache holds: a device, or that there is none (lru-cache holds no null). */
interface Entry {
  readonly record: DeviceRecord | null;
}

/**
 * The devices the hot paths ask about, cached in memory (an LRU bounded in
 * size and time). The registry's change signal invalidates an entry on every
 * replica; the TTL bounds how long a missed signal is felt.
 */
export function createDeviceDirectory(options: DeviceDirectoryOptions): DeviceDirectory {
  const { clock } = options;
  const ttlMs = options.ttlMs ?? 60_000;
  const negativeTtlMs = options.negativeTtlMs ?? 2_000;
  const maxEntries = options.maxEntries ?? 200_000;
  // An expired entry is kept until it is replaced or evicted: with Postgres
  // unreachable it is still the best answer (see get).
  const entries = new LRUCache<string, Entry>({ max: maxEntries, ttl: ttlMs, noDeleteOnStaleGet: true, perf: { now: clock } });
  const loading = new Map<string, Promise<DeviceRecord | null>>();
  // Bumped by every invalidation so a load that started before it is not
  // cached; `epoch` does the same for every device at once.
  const generation = new Map<string, number>();
  let epoch = 0;
  const versionOf = (deviceId: string) => `${epoch}:${generation.get(deviceId) ?? 0}`;

  function remember(deviceId: string, record: DeviceRecord | null) {
    entries.set(deviceId, { record }, { ttl: record ? ttlMs : negativeTtlMs });
  }

  async function load(deviceId: string): Promise<DeviceRecord | null> {
    const startedAt = versionOf(deviceId);
    const record = await options.load(deviceId);
    if (versionOf(deviceId) === startedAt) remember(deviceId, record);
    return record;
  }

  return {
    peek(deviceId) {
      return entries.peek(deviceId)?.record;
    },
    get(deviceId) {
      const fresh = entries.get(deviceId);
      if (fresh) return Promise.resolve(fresh.record);
      let pending = loading.get(deviceId);
      if (!pending) {
        pending = load(deviceId).finally(() => loading.delete(deviceId));
        loading.set(deviceId, pending);
      }
      // With Postgres unreachable, an expired entry is still the best answer:
      // changes that matter (disable, delete) evict entries through the change log.
      const stale = entries.peek(deviceId, { allowStale: true });
      return stale ? pending.catch(() => stale.record) : pending;
    },
    refresh(deviceId) {
      // Not shared with a load under way: that one may have started before the caller's reason to look again.
      return load(deviceId);
    },
    invalidate(deviceId) {
      entries.delete(deviceId);
      generation.set(deviceId, (generation.get(deviceId) ?? 0) + 1);
      if (generation.size > maxEntries) generation.clear();
    },
    clear() {
      entries.clear();
      generation.clear();
      epoch++;
    },
  };
}
