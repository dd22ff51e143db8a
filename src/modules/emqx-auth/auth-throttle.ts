import type { Redis } from 'ioredis';
import { defineRedisScript } from '../../infra/redis-script.js';

export interface BackoffPolicy {
  /** Failures allowed before backoff starts. */
  readonly freeFailures: number;
  /** The first block; each further failure doubles it. */
  readonly baseMs: number;
  readonly maxMs: number;
}

export interface AuthThrottleOptions {
  redis: Redis;
  keyPrefix: string;
  device?: BackoffPolicy;
  /** Looser than per device: many devices may share an address behind NAT. */
  peer?: BackoffPolicy;
  /** Failures older than this are forgotten. */
  windowS?: number;
}

export interface AuthThrottle {
  /** Which scope blocks the attempt now, or null. Rejects when Redis is unreachable. */
  blockedBy(deviceId: string, peer: string): Promise<'device' | 'peer' | null>;
  recordFailure(deviceId: string | null, peer: string): Promise<void>;
  recordSuccess(deviceId: string): Promise<void>;
}

export const DEFAULT_DEVICE_BACKOFF: BackoffPolicy = { freeFailures: 5, baseMs: 1000, maxMs: 5 * 60_000 };
export const DEFAULT_PEER_BACKOFF: BackoffPolicy = { freeFailures: 50, baseMs: 1000, maxMs: 5 * 60_000 };

// INCR and the block decision in one step, so concurrent failures on several
// replicas each see their own count.
const RECORD_FAILURE = `
local failures = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local over = failures - tonumber(ARGV[1])
if over <= 0 then return 0 end
local ms = math.min(tonumber(ARGV[2]) * math.pow(2, math.min(over - 1, 30)), tonumber(ARGV[3]))
redis.call('SET', KEYS[2], '1', 'PX', math.floor(ms))
return math.floor(ms)
`;

/**
 * Failed-attempt counters with exponential backoff, checked before any hashing
 * so that guessing costs the attacker time and costs us no argon2 work.
 * Layout: `authn:fail:{dev|peer}:{id}` (count, expires after the window) and
 * `authn:block:{dev|peer}:{id}` (present while blocked, PX = backoff).
 */
export function createAuthThrottle(options: AuthThrottleOptions): AuthThrottle {
  const { redis, keyPrefix } = options;
  const device = options.device ?? DEFAULT_DEVICE_BACKOFF;
  const peer = options.peer ?? DEFAULT_PEER_BACKOFF;
  const windowS = options.windowS ?? 15 * 60;
  const recordFailure = defineRedisScript(redis, 'dlmAuthnFailure', RECORD_FAILURE, 2);
  const failKey = (scope: string, id: string) => `${keyPrefix}authn:fail:${scope}:${id}`;
  const blockKey = (scope: string, id: string) => `${keyPrefix}authn:block:${scope}:${id}`;

  const record = (scope: string, id: string, policy: BackoffPolicy) =>
    recordFailure([failKey(scope, id), blockKey(scope, id)], [policy.freeFailures, policy.baseMs, policy.maxMs, windowS]);

  return {
    async blockedBy(deviceId, peerAddress) {
      const keys = [blockKey('dev', deviceId)];
      if (peerAddress) keys.push(blockKey('peer', peerAddress));
      const [deviceBlocked, peerBlocked] = await redis.mget(...keys);
      if (deviceBlocked) return 'device';
      if (peerBlocked) return 'peer';
      return null;
    },
    async recordFailure(deviceId, peerAddress) {
      await Promise.all([
        deviceId ? record('dev', deviceId, device) : undefined,
        peerAddress ? record('peer', peerAddress, peer) : undefined,
      ]);
    },
    async recordSuccess(deviceId) {
      await redis.del(failKey('dev', deviceId), blockKey('dev', deviceId));
    },
  };
}
