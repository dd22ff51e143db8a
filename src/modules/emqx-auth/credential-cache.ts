import type { Clock } from '../../lib/clock.js';
import type { RedisConnection } from '../../infra/redis.js';
import { createBatchedGet } from '../../infra/redis-batched-get.js';
import { defineRedisScript } from '../../infra/redis-script.js';
import { bySlot, slotTag } from '../../infra/redis-slots.js';
import { hash } from 'node:crypto';
import { createHmacSha256 } from '../../lib/digest.js';
import { createTurnBatcher } from '../../lib/turn-batcher.js';

/** What a successful verification proved; never the secret or its hash. */
export interface VerifiedCredential {
  readonly deviceId: string;
  readonly tenantId: string;
  /** The API key used, or null for the device PSK. */
  readonly keyId: string | null;
  /** The key's not_after in milliseconds since the epoch, or null. */
  readonly notAfter: number | null;
  /** The device's credential version it was verified under: void once the device has another. */
  readonly version: string;
}

/**
 * A device id and presented secret as the cache names them; the secret itself
 * is never a key. In this replica's memory: their SHA-256, cheap enough for
 * every CONNECT (a keyed digest would add nothing there, as its key sits in
 * the same memory). In Redis, which other processes read: their HMAC under
 * the cache secret, made only when Redis is asked, so that a PSK chosen by
 * people cannot be guessed offline from a copy of Redis.
 */
export interface CacheKey {
  readonly memory: string;
  readonly stored: string;
}

export interface CredentialCache {
  keyFor(deviceId: string, presented: string): CacheKey;
  /** The in-memory entry, without I/O. */
  peek(key: CacheKey): VerifiedCredential | undefined;
  /** Reads Redis (and fills memory on a hit). Rejects when Redis is unreachable. */
  fetch(key: CacheKey, deviceId: string): Promise<VerifiedCredential | undefined>;
  /** A counter bumped by every invalidation of the device; a verify that began before it must not be cached. */
  generation(deviceId: string): number;
  /** Stores a fresh verification unless the device was invalidated since `generation`. */
  store(key: CacheKey, credential: VerifiedCredential, generation: number): Promise<void>;
  drop(key: CacheKey): void;
  /** Drops the device's entries from this replica's memory; verifications under way are not cached. */
  forgetDevice(deviceId: string): void;
  /** Deletes the entries of a key (keyId given) or of the whole device from Redis. Rejects when Redis fails. */
  deleteStored(deviceId: string, keyId?: string): Promise<void>;
  /** Drops every entry held in memory (change signals may have been missed); verifications under way are not cached. */
  clearMemory(): void;
  /** Verifications held in this replica's memory (some may have outlived their memory TTL and await their next look-up). */
  heldInMemory(): number;
}

export interface CredentialCacheOptions {
  redis: RedisConnection;
  keyPrefix: string;
  secret: string;
  clock: Clock;
  ttlMs: number;
  /** In-memory entries live at most this long, so a missed change signal heals quickly. */
  memoryTtlMs?: number;
  maxEntries?: number;
  random?: () => number;
}

/**
 * A CacheKey made on every CONNECT: the memory name at once, the Redis name
 * when first asked for. A class, not an object literal with a getter: a
 * literal defines its accessor anew on each object, a call into V8's runtime
 * that cost as much as the SHA-256 (measured: 0.95–1.1 µs against 0.50–0.54 µs
 * per key made).
 */
class NamedSecret implements CacheKey {
  readonly memory: string;
  #message: string;
  #hmac: (message: string) => string;
  #stored: string | undefined;

  constructor(deviceId: string, presented: string, hmac: (message: string) => string) {
    // The NUL separator keeps (id, secret) pairs from colliding by concatenation.
    this.#message = `${deviceId}\0${presented}`;
    this.#hmac = hmac;
    this.memory = hash('sha256', this.#message, 'base64url');
  }

  get stored(): string {
    return (this.#stored ??= this.#hmac(this.#message));
  }
}

interface MemoryEntry {
  credential: VerifiedCredential;
  expiresAt: number;
}

/** Redis form: short field names, no secret material. */
interface StoredCredential {
  d: string;
  t: string;
  k: string | null;
  n: number | null;
  v: string;
  /** When the Redis entry expires (ms), so a read needs no PTTL round trip. */
  x: number;
}

// Each entry and its index line in one step (KEYS: entry, device index;
// ARGV: JSON, its TTL ms, cache key, key id, index TTL ms; per entry, many
// per call): an entry the index does not name could outlive the clean-up of
// the change that condemns it.
const STORE = `
for i = 1, #KEYS, 2 do
  local arg = (i - 1) / 2 * 5
  redis.call('SET', KEYS[i], ARGV[arg + 1], 'PX', ARGV[arg + 2])
  redis.call('HSET', KEYS[i + 1], ARGV[arg + 3], ARGV[arg + 4])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[arg + 5])
end
return 0
`;

/**
 * Where an entry and a device's index live. On a Redis Cluster both carry the
 * device's hash tag, so one script writes them together and one transaction
 * deletes them.
 */
export function credentialCacheKeys(redis: RedisConnection, keyPrefix: string) {
  return {
    entry: (cacheKey: string, deviceId: string) => `${keyPrefix}authn:cred:${redis.isCluster ? `{${deviceId}}:` : ''}${cacheKey}`,
    index: (deviceId: string) => `${keyPrefix}authn:dev:${slotTag(redis, deviceId)}`,
  };
}

interface StoreRequest {
  /** The entry's name in Redis (CacheKey.stored). */
  cacheKey: string;
  credential: VerifiedCredential;
  /** The device's generation when the verification began. */
  startedAt: number;
}

/**
 * Verified-credential cache: an LRU in memory in front of Redis. An entry
 * holds the device's credential version it was verified under; authentication
 * compares it with the device's current one, so an entry that a change voided
 * is never used, whether or not its deletion reached Redis.
 *
 * Redis layout (under the key prefix; on a Redis Cluster the device id is
 * also a hash tag, `authn:cred:{<device>}:<hmac>` and `authn:dev:{<device>}`):
 *  - `authn:cred:<hmac>` → JSON {d, t, k, n, v, x}, with TTL ± 10 % jitter so a
 *    fleet verified at the same moment does not expire at the same moment;
 *  - `authn:dev:<device>` hash, field hmac → key id ("" = PSK): the index
 *    that lets a change's clean-up find a device's entries.
 * The clean-up of a change deletes what it names from Redis (retried until
 * Redis takes it); the entries matter on their own only while Postgres cannot
 * tell the device's current version.
 */
export function createCredentialCache(options: CredentialCacheOptions): CredentialCache {
  const { redis, keyPrefix, clock, ttlMs } = options;
  const memoryTtlMs = Math.min(options.memoryTtlMs ?? 60_000, ttlMs);
  const maxEntries = options.maxEntries ?? 100_000;
  const random = options.random ?? Math.random;
  const hmac = createHmacSha256(options.secret);
  const storeScript = defineRedisScript(redis, 'dlmCredentialStore', STORE, 'any');
  const keys = credentialCacheKeys(redis, keyPrefix);
  // The entries stored in one turn of the event loop go to Redis in one script
  // call (on a cluster, one per hash slot). One whose device was invalidated
  // while it waited is not written: the invalidation's deletion may have run already.
  const write = createTurnBatcher(async (requests: StoreRequest[]) => {
    const current = requests.filter(({ credential, startedAt }) => generation(credential.deviceId) === startedAt);
    const writes = bySlot(redis, current, ({ credential }) => keys.index(credential.deviceId)).map((group) =>
      storeScript(
        group.flatMap(({ cacheKey, credential }) => [keys.entry(cacheKey, credential.deviceId), keys.index(credential.deviceId)]),
        group.flatMap(({ cacheKey, credential }) => {
          const lifetime = jitter(ttlMs);
          const stored: StoredCredential = {
            d: credential.deviceId,
            t: credential.tenantId,
            k: credential.keyId,
            n: credential.notAfter,
            v: credential.version,
            x: clock() + lifetime,
          };
          return [JSON.stringify(stored), lifetime, cacheKey, credential.keyId ?? '', Math.round(ttlMs * 1.2)];
        }),
      ),
    );
    // Every group is tried; the calls of the turn share the first failure (writes are best effort).
    for (const result of await Promise.allSettled(writes)) if (result.status === 'rejected') throw result.reason;
    return requests.map(() => undefined);
  });
  const read = createBatchedGet(redis);
  const memory = new Map<string, MemoryEntry>();
  const byDevice = new Map<string, Set<string>>();
  // Generations are values of one ever-increasing counter; after the map is
  // cleared (bounded size) every device reads the floor, which is newer than
  // any generation handed out before, so in-flight verifies are not cached.
  const generations = new Map<string, number>();
  let counter = 0;
  let floor = 0;
  const generation = (deviceId: string) => generations.get(deviceId) ?? floor;
  const bumpAll = () => {
    generations.clear();
    floor = ++counter;
  };
  const bump = (deviceId: string) => {
    if (generations.size >= maxEntries) bumpAll();
    generations.set(deviceId, ++counter);
  };
  // Devices whose Redis entries are being deleted: until that finishes, a Redis
  // read may still return an entry the change has condemned.
  const invalidating = new Map<string, number>();

  const jitter = (ms: number) => Math.round(ms * (0.9 + random() * 0.2));

  function forget(cacheKey: string) {
    const entry = memory.get(cacheKey);
    if (!entry) return;
    memory.delete(cacheKey);
    const keys = byDevice.get(entry.credential.deviceId);
    keys?.delete(cacheKey);
    if (keys?.size === 0) byDevice.delete(entry.credential.deviceId);
  }

  function remember(cacheKey: string, credential: VerifiedCredential, lifetimeMs: number) {
    forget(cacheKey);
    memory.set(cacheKey, { credential, expiresAt: clock() + lifetimeMs });
    let keys = byDevice.get(credential.deviceId);
    if (!keys) byDevice.set(credential.deviceId, (keys = new Set()));
    keys.add(cacheKey);
    if (memory.size > maxEntries) {
      const oldest = memory.keys().next().value;
      if (oldest !== undefined) forget(oldest);
    }
  }

  return {
    keyFor: (deviceId, presented) => new NamedSecret(deviceId, presented, hmac),
    peek({ memory: cacheKey }) {
      const entry = memory.get(cacheKey);
      if (!entry) return undefined;
      if (entry.expiresAt <= clock()) {
        forget(cacheKey);
        return undefined;
      }
      memory.delete(cacheKey);
      memory.set(cacheKey, entry);
      return entry.credential;
    },
    async fetch(key, deviceId) {
      const startedAt = generation(deviceId);
      const value = await read(keys.entry(key.stored, deviceId));
      if (value === null) return undefined;
      let stored: StoredCredential;
      try {
        stored = JSON.parse(value) as StoredCredential;
      } catch {
        return undefined;
      }
      // The HMAC binds the entry to the device; a mismatch means a corrupt entry.
      // An entry without a version is from before versions and is verified again.
      if (stored.d !== deviceId || typeof stored.t !== 'string' || typeof stored.v !== 'string') return undefined;
      const credential: VerifiedCredential = { deviceId: stored.d, tenantId: stored.t, keyId: stored.k, notAfter: stored.n, version: stored.v };
      // Invalidated while the read was in flight: the entry may be the one just deleted.
      if (generation(deviceId) !== startedAt || invalidating.has(deviceId)) return undefined;
      const remainingMs = typeof stored.x === 'number' ? stored.x - clock() : 0;
      if (remainingMs > 0) remember(key.memory, credential, Math.min(memoryTtlMs, remainingMs));
      return credential;
    },
    generation,
    async store(key, credential, startedAt) {
      if (generation(credential.deviceId) !== startedAt) return;
      remember(key.memory, credential, jitter(memoryTtlMs));
      await write({ cacheKey: key.stored, credential, startedAt });
    },
    drop: (key) => forget(key.memory),
    heldInMemory: () => memory.size,
    clearMemory() {
      memory.clear();
      byDevice.clear();
      bumpAll();
    },
    forgetDevice(deviceId) {
      bump(deviceId);
      for (const cacheKey of [...(byDevice.get(deviceId) ?? [])]) forget(cacheKey);
    },
    async deleteStored(deviceId, keyId) {
      invalidating.set(deviceId, (invalidating.get(deviceId) ?? 0) + 1);
      try {
        const index = await redis.hgetall(keys.index(deviceId));
        const doomed = Object.entries(index)
          .filter(([, indexedKeyId]) => keyId === undefined || indexedKeyId === keyId)
          .map(([cacheKey]) => cacheKey);
        if (doomed.length > 0) {
          await redis
            .multi()
            .del(...doomed.map((cacheKey) => keys.entry(cacheKey, deviceId)))
            .hdel(keys.index(deviceId), ...doomed)
            .exec();
        }
      } finally {
        const remaining = (invalidating.get(deviceId) ?? 1) - 1;
        if (remaining > 0) invalidating.set(deviceId, remaining);
        else invalidating.delete(deviceId);
        // Reads and verifies that overlapped the deletion must not be cached either.
        bump(deviceId);
      }
    },
  };
}
