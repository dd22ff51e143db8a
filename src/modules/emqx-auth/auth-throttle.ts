import type { RedisConnection } from '../../infra/redis.js';
import { createBatchedGet } from '../../infra/redis-batched-get.js';
import { defineRedisScript } from '../../infra/redis-script.js';
import { bySlot, slotTag } from '../../infra/redis-slots.js';
import { systemClock, type Clock } from '../../lib/clock.js';

export interface BackoffPolicy {
  /** Failures allowed before backoff starts. */
  readonly freeFailures: number;
  /** The first block; each further failure doubles it. */
  readonly baseMs: number;
  readonly maxMs: number;
}

/**
 * What a limit counts failures of: one address guessing one device, one
 * address guessing across devices, or one device guessed at from many
 * addresses.
 */
export type ThrottleScope = 'device_peer' | 'peer' | 'device';

export interface ThrottlePolicies {
  readonly device_peer: BackoffPolicy;
  /** Looser: many devices may share an address behind NAT. */
  readonly peer: BackoffPolicy;
  /** A ceiling against guessing spread over many addresses: high, with a short backoff. */
  readonly device: BackoffPolicy;
}

/** What the attempt presented: a generated API key, or the PSK a person chose. */
export type SecretKind = 'key' | 'psk';

export interface AuthThrottleOptions {
  redis: RedisConnection;
  keyPrefix: string;
  policies?: ThrottlePolicies;
  /** Failures older than this are forgotten. */
  windowS?: number;
  /** A peer that authenticated a PSK device is exempt from the device-wide limit for this long. */
  knownPeerS?: number;
  clock?: Clock;
}

export interface ThrottleState {
  /** Which limit blocks the attempt now, or null. */
  blockedBy: ThrottleScope | null;
  /** This address has failures on record for this device (a success then clears them). */
  pairFailed: boolean;
}

export interface AuthThrottle {
  /** The limits as they stand for this attempt. Rejects when Redis is unreachable. */
  check(deviceId: string, peer: string, secret: SecretKind): Promise<ThrottleState>;
  /** A failed attempt; `deviceId` null when the client id names no device. */
  recordFailure(deviceId: string | null, peer: string, secret: SecretKind): Promise<void>;
  /** The device's owner got in from this address: that pair starts afresh, and a PSK device knows the address. */
  recordSuccess(deviceId: string, peer: string, secret: SecretKind, pairFailed: boolean): Promise<void>;
  /** Forgets the device's failures and known addresses (the device was deleted). */
  forgetDevice(deviceId: string): Promise<void>;
}

/**
 * Guessing costs the guesser: the limits that block soon are those of the
 * guessing address (alone, or paired with the device it guesses at), so a
 * stranger's wrong passwords never lock the owner, connecting from elsewhere,
 * out. The device-wide limit applies to PSKs only and spares the addresses
 * the device authenticated from: an API key is 256 random bits, so no number
 * of guesses at it needs a device-wide block, and none may refuse it.
 */
export const DEFAULT_THROTTLE_POLICIES: ThrottlePolicies = {
  device_peer: { freeFailures: 5, baseMs: 1000, maxMs: 5 * 60_000 },
  peer: { freeFailures: 50, baseMs: 1000, maxMs: 5 * 60_000 },
  device: { freeFailures: 200, baseMs: 1000, maxMs: 30_000 },
};

// For each scope given (KEYS: failure counter, block key; ARGV: free
// failures, base ms, max ms), INCR and the block decision in one step, so
// concurrent failures on several replicas each see their own count. ARGV[1]
// is the window in seconds. Scopes need not be counted together: on a Redis
// Cluster each call carries the scopes of one hash slot.
const RECORD_FAILURES = `
for i = 1, #KEYS, 2 do
  local failures = redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
  local base = 2 + (i - 1) / 2 * 3
  local over = failures - tonumber(ARGV[base])
  if over > 0 then
    local ms = math.min(tonumber(ARGV[base + 1]) * math.pow(2, math.min(over - 1, 30)), tonumber(ARGV[base + 2]))
    redis.call('SET', KEYS[i + 1], '1', 'PX', math.floor(ms))
  end
end
return 0
`;

/**
 * Failed-attempt counters with exponential backoff, checked before any
 * verification so that guessing costs the attacker time and costs us no
 * hashing. Layout: `authn:fail:<scope>:<id>` (count, expires after the window)
 * and `authn:block:<scope>:<id>` (present while blocked, PX = backoff), where
 * the id is `<device>|<peer>`, `<peer>` or `<device>`; and `authn:known:<device>`, a
 * hash of the addresses a PSK device authenticated from → until when (ms) they
 * are exempt from the device-wide limit. On a Redis Cluster the device (or, for
 * the per-address scope, the address) is a hash tag: `{<device>}|<peer>`,
 * `{<peer>}`, `{<device>}`, so a scope's counter and block, and everything of
 * one device, share a slot.
 */
export function createAuthThrottle(options: AuthThrottleOptions): AuthThrottle {
  const { redis, keyPrefix } = options;
  const policies = options.policies ?? DEFAULT_THROTTLE_POLICIES;
  const windowS = options.windowS ?? 15 * 60;
  const knownPeerS = options.knownPeerS ?? 30 * 86_400;
  const clock = options.clock ?? systemClock;
  const recordFailures = defineRedisScript(redis, 'dlmAuthnFailures', RECORD_FAILURES, 'any');
  const read = createBatchedGet(redis);
  const failKey = (scope: ThrottleScope, id: string) => `${keyPrefix}authn:fail:${scope}:${id}`;
  const blockKey = (scope: ThrottleScope, id: string) => `${keyPrefix}authn:block:${scope}:${id}`;
  const knownKey = (deviceId: string) => `${keyPrefix}authn:known:${slotTag(redis, deviceId)}`;
  const isKnown = async (deviceId: string, peer: string) => Number((await redis.hget(knownKey(deviceId), peer)) ?? 0) > clock();
  const idOf = (scope: ThrottleScope, deviceId: string, peer: string) =>
    scope === 'device_peer' ? `${slotTag(redis, deviceId)}|${peer}` : slotTag(redis, scope === 'peer' ? peer : deviceId);
  /** The scopes an attempt counts in: an empty peer (EMQX rendered none) counts for the device only; keys never device-wide. */
  const scopesOf = (deviceId: string | null, peer: string, secret: SecretKind): ThrottleScope[] => {
    if (deviceId === null) return peer ? ['peer'] : [];
    const perDevice: ThrottleScope[] = secret === 'psk' ? ['device'] : [];
    return peer ? ['device_peer', 'peer', ...perDevice] : perDevice;
  };

  return {
    async check(deviceId, peer, secret) {
      const scopes = scopesOf(deviceId, peer, secret);
      const pair = idOf('device_peer', deviceId, peer);
      // The block keys of every scope, then the pair's failure counter (read with other attempts' keys in one MGET).
      const keys = [...scopes.map((scope) => blockKey(scope, idOf(scope, deviceId, peer))), failKey('device_peer', pair)];
      const values = await Promise.all(keys.map(read));
      let blockedBy = scopes.find((_, index) => values[index] !== null) ?? null;
      // Asked only while a device-wide block stands: an address the device authenticated from is spared it.
      if (blockedBy === 'device' && peer !== '' && (await isKnown(deviceId, peer))) blockedBy = null;
      return { blockedBy, pairFailed: peer !== '' && values[scopes.length] !== null };
    },
    async recordFailure(deviceId, peer, secret) {
      const scopes = scopesOf(deviceId, peer, secret).map((scope) => ({ scope, id: idOf(scope, deviceId ?? '', peer) }));
      await Promise.all(
        bySlot(redis, scopes, ({ scope, id }) => failKey(scope, id)).map((group) =>
          recordFailures(
            group.flatMap(({ scope, id }) => [failKey(scope, id), blockKey(scope, id)]),
            [windowS, ...group.flatMap(({ scope }) => [policies[scope].freeFailures, policies[scope].baseMs, policies[scope].maxMs])],
          ),
        ),
      );
    },
    async recordSuccess(deviceId, peer, secret, pairFailed) {
      if (peer === '') return;
      const id = idOf('device_peer', deviceId, peer);
      const writes: Promise<unknown>[] = [];
      if (pairFailed) writes.push(redis.del(failKey('device_peer', id), blockKey('device_peer', id)));
      if (secret === 'psk') {
        writes.push(redis.multi().hset(knownKey(deviceId), peer, String(clock() + knownPeerS * 1000)).expire(knownKey(deviceId), knownPeerS).exec());
      }
      await Promise.all(writes);
    },
    async forgetDevice(deviceId) {
      const id = idOf('device', deviceId, '');
      await redis.del(failKey('device', id), blockKey('device', id), knownKey(deviceId));
    },
  };
}
