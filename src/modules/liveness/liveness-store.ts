import type { RedisConnection } from '../../infra/redis.js';
import { defineRedisScript } from '../../infra/redis-script.js';

/**
 * Liveness state in Redis. Every key shares the `{liveness}` hash tag, so the
 * scripts below touch one cluster slot only. Keys (after REDIS_KEY_PREFIX):
 *
 *  - `{liveness}:state` HASH device id → `online|seen|thresholdMs|changedAt|tenant`
 *    (online 0/1; seen = last accepted telemetry, ms; changedAt = time of the
 *    last online/offline transition, ms).
 *  - `{liveness}:deadlines` ZSET device id → due time (ms). Holds online
 *    devices only, so a sweep reads just the due head of the set: its cost
 *    does not grow with the devices that are not due.
 *  - `{liveness}:outbox` ZSET transition → time (ms) from which any replica may
 *    (re)send it. A transition enters the outbox in the same script that
 *    decides it, with a lease; whoever produced it to Kafka removes it. A lease
 *    that runs out (produce failed, replica died) hands it to the next sweep.
 *  - `{liveness}:unsaved` ZSET device id → seen (ms): devices whose last_seen
 *    Postgres does not have yet; drained in batches.
 */

export type TransitionType = 'online' | 'offline';

export interface Transition {
  /** The outbox member: `type|device|tenant|at|seen`. */
  readonly member: string;
  readonly type: TransitionType;
  readonly deviceId: string;
  readonly tenantId: string;
  /** When the transition happened: the first message (online) or seen + threshold (offline). */
  readonly atMs: number;
  readonly seenMs: number;
}

export interface LivenessState {
  readonly deviceId: string;
  readonly online: boolean;
  readonly seenMs: number;
  readonly thresholdMs: number;
  readonly changedAtMs: number;
  readonly tenantId: string;
}

/** What one touch records: the messages of a device accepted since its previous touch. */
export interface TouchInput {
  deviceId: string;
  tenantId: string;
  /** The earliest and the latest arrival time of those messages (equal for one message). */
  firstAtMs: number;
  lastAtMs: number;
  thresholdMs: number;
  slackMs: number;
}

/** Shared by the touches of one call. */
export interface TouchContext {
  nowMs: number;
  /** How long an online transition belongs to the caller before the sweep may take it over. */
  leaseMs: number;
}

export type TouchResult = { kind: 'skipped' } | { kind: 'extended' } | { kind: 'online'; transition: Transition };

export interface LivenessStore {
  /**
   * Records telemetry that arrived from `firstAtMs` to `lastAtMs` (clamped to
   * `nowMs`): an offline or unknown device becomes online as of `firstAtMs`
   * (`lastAtMs` when the first message's own deadline already passed; the
   * transition enters the outbox leased until `nowMs + leaseMs`); an
   * online one gets the deadline `lastAtMs + threshold + slack`. Skips the
   * write when the stored `seen` is less than `slackMs` older, and ignores
   * messages whose own deadline already passed.
   */
  touch(input: TouchInput, context: TouchContext): Promise<TouchResult>;
  /** `touch` for many devices in one script call, in order; one result per input. */
  touchMany(inputs: readonly TouchInput[], context: TouchContext): Promise<TouchResult[]>;
  /**
   * Atomically takes up to `limit` devices whose deadline is ≤ `nowMs` offline
   * (their offline transitions enter the outbox leased until `nowMs +
   * leaseMs`), and takes over up to `limit` outbox transitions whose lease ran
   * out. Each transition is returned to exactly one caller per lease.
   */
  claim(input: { nowMs: number; limit: number; leaseMs: number }): Promise<{ expired: Transition[]; retried: Transition[] }>;
  /** Removes produced transitions from the outbox. */
  ack(transitions: readonly Transition[]): Promise<void>;
  /** Makes transitions that could not be produced claimable again from `retryAtMs`. */
  release(transitions: readonly Transition[], retryAtMs: number): Promise<void>;
  /** Applies a new threshold to the device's current deadline (no-op for an untracked device). */
  retime(deviceId: string, thresholdMs: number, slackMs: number): Promise<void>;
  /** Drops everything about a deleted device (outbox entries are dropped when they fail). */
  forget(deviceId: string): Promise<void>;
  read(deviceId: string): Promise<LivenessState | null>;
  /** Takes up to `limit` devices whose last_seen Postgres lacks, with their current state. */
  takeUnsaved(limit: number): Promise<LivenessState[]>;
  /** Puts devices back for the next Postgres write (keeping a newer pending seen). */
  markUnsaved(states: readonly { deviceId: string; seenMs: number }[]): Promise<void>;
}

/** Parses `online|seen|threshold|changed|tenant`. Lua's tostring keeps 14 digits: exact for epoch ms. */
const STATE_PATTERN = `'^([01])|(%d+)|(%d+)|(%d+)|(.*)$'`;

/**
 * ARGV: now, lease, then six arguments per touch (see touchArguments). One
 * result per touch: 0 skipped, 1 extended, or the online transition.
 */
const TOUCH = `
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local results = {}
for base = 2, #ARGV - 6, 6 do
  local id, tenant = ARGV[base + 1], ARGV[base + 2]
  local threshold, slack = tonumber(ARGV[base + 5]), tonumber(ARGV[base + 6])
  local last = math.min(tonumber(ARGV[base + 4]), now)
  local first = math.min(tonumber(ARGV[base + 3]), last)
  -- Messages whose own deadline passed never made the device online: when the
  -- first did not count, the last (which does) stands for the earliest.
  if first + threshold <= now then first = last end
  local result = 0
  if last + threshold > now then
    local online, seen, changed = '0', 0, 0
    local current = redis.call('HGET', KEYS[1], id)
    if current then
      local o, s, _, c = string.match(current, ${STATE_PATTERN})
      if o then online, seen, changed = o, tonumber(s), tonumber(c) end
    end
    if online ~= '1' or last >= seen + slack then
      local since = math.max(seen, first)
      seen = math.max(seen, last)
      redis.call('ZADD', KEYS[2], seen + threshold + slack, id)
      redis.call('ZADD', KEYS[4], seen, id)
      if online == '1' then
        redis.call('HSET', KEYS[1], id, '1|' .. seen .. '|' .. threshold .. '|' .. changed .. '|' .. tenant)
        result = 1
      else
        redis.call('HSET', KEYS[1], id, '1|' .. seen .. '|' .. threshold .. '|' .. since .. '|' .. tenant)
        result = 'online|' .. id .. '|' .. tenant .. '|' .. since .. '|' .. seen
        redis.call('ZADD', KEYS[3], now + lease, result)
      end
    end
  end
  results[#results + 1] = result
end
return results
`;

const CLAIM = `
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local retried = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(retried) do redis.call('ZADD', KEYS[3], now + lease, member) end
local expired = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  local current = redis.call('HGET', KEYS[1], id)
  if current then
    local o, s, t, _, tenant = string.match(current, ${STATE_PATTERN})
    if o == '1' then
      local at = tonumber(s) + tonumber(t)
      redis.call('HSET', KEYS[1], id, '0|' .. s .. '|' .. t .. '|' .. at .. '|' .. tenant)
      local member = 'offline|' .. id .. '|' .. tenant .. '|' .. at .. '|' .. s
      redis.call('ZADD', KEYS[3], now + lease, member)
      expired[#expired + 1] = member
    end
  end
end
return {retried, expired}
`;

const RETIME = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local o, s, _, c, tenant = string.match(current, ${STATE_PATTERN})
if not o then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], o .. '|' .. s .. '|' .. ARGV[2] .. '|' .. c .. '|' .. tenant)
if o == '1' then redis.call('ZADD', KEYS[2], tonumber(s) + tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1]) end
return 1
`;

const TAKE_UNSAVED = `
local popped = redis.call('ZPOPMIN', KEYS[2], tonumber(ARGV[1]))
local out = {}
for i = 1, #popped, 2 do
  local current = redis.call('HGET', KEYS[1], popped[i])
  if current then
    out[#out + 1] = popped[i]
    out[#out + 1] = current
  end
end
return out
`;

export function parseTransition(member: string): Transition | null {
  const [type, deviceId, tenantId, at, seen] = member.split('|');
  if ((type !== 'online' && type !== 'offline') || !deviceId || !tenantId || !at || !seen) return null;
  return { member, type, deviceId, tenantId, atMs: Number(at), seenMs: Number(seen) };
}

function parseState(deviceId: string, value: string): LivenessState | null {
  const match = /^([01])\|(\d+)\|(\d+)\|(\d+)\|(.*)$/.exec(value);
  if (!match) return null;
  const [, online, seen, threshold, changed, tenantId] = match;
  return {
    deviceId,
    online: online === '1',
    seenMs: Number(seen),
    thresholdMs: Number(threshold),
    changedAtMs: Number(changed),
    tenantId: tenantId ?? '',
  };
}

function transitionsOf(value: unknown): Transition[] {
  if (!Array.isArray(value)) return [];
  return value.flatMap((member) => {
    const parsed = typeof member === 'string' ? parseTransition(member) : null;
    return parsed ? [parsed] : [];
  });
}

const touchArguments = (input: TouchInput) => [
  input.deviceId,
  input.tenantId,
  Math.floor(input.firstAtMs),
  Math.floor(input.lastAtMs),
  Math.floor(input.thresholdMs),
  Math.floor(input.slackMs),
];

export function createLivenessStore(redis: RedisConnection, keyPrefix: string): LivenessStore {
  const keys = {
    state: `${keyPrefix}{liveness}:state`,
    deadlines: `${keyPrefix}{liveness}:deadlines`,
    outbox: `${keyPrefix}{liveness}:outbox`,
    unsaved: `${keyPrefix}{liveness}:unsaved`,
  };
  const all = [keys.state, keys.deadlines, keys.outbox, keys.unsaved];
  const touchScript = defineRedisScript(redis, 'dlmLivenessTouch', TOUCH, all.length);
  const claimScript = defineRedisScript(redis, 'dlmLivenessClaim', CLAIM, all.length);
  const retimeScript = defineRedisScript(redis, 'dlmLivenessRetime', RETIME, 2);
  const takeUnsavedScript = defineRedisScript(redis, 'dlmLivenessTakeUnsaved', TAKE_UNSAVED, 2);

  async function touchMany(inputs: readonly TouchInput[], { nowMs, leaseMs }: TouchContext): Promise<TouchResult[]> {
    if (inputs.length === 0) return [];
    const results = await touchScript(all, [Math.floor(nowMs), Math.floor(leaseMs), ...inputs.flatMap(touchArguments)]);
    if (!Array.isArray(results) || results.length !== inputs.length) throw new Error('liveness touch: unexpected reply');
    return results.map((result): TouchResult => {
      if (typeof result === 'string') {
        const transition = parseTransition(result);
        if (transition) return { kind: 'online', transition };
      }
      return result === 1 ? { kind: 'extended' } : { kind: 'skipped' };
    });
  }

  return {
    async touch(input, context) {
      const [result] = await touchMany([input], context);
      return result ?? { kind: 'skipped' };
    },

    touchMany,

    async claim({ nowMs, limit, leaseMs }) {
      const result = await claimScript(all, [Math.floor(nowMs), limit, Math.floor(leaseMs)]);
      const [retried, expired] = Array.isArray(result) ? result : [];
      return { expired: transitionsOf(expired), retried: transitionsOf(retried) };
    },

    async ack(transitions) {
      if (transitions.length > 0) await redis.zrem(keys.outbox, ...transitions.map((t) => t.member));
    },

    async release(transitions, retryAtMs) {
      if (transitions.length === 0) return;
      // XX: a transition acknowledged meanwhile (by a replica that took over) stays gone.
      await redis.zadd(keys.outbox, 'XX', ...transitions.flatMap((t) => [Math.floor(retryAtMs), t.member]));
    },

    async retime(deviceId, thresholdMs, slackMs) {
      await retimeScript([keys.state, keys.deadlines], [deviceId, Math.floor(thresholdMs), Math.floor(slackMs)]);
    },

    async forget(deviceId) {
      await redis.multi().hdel(keys.state, deviceId).zrem(keys.deadlines, deviceId).zrem(keys.unsaved, deviceId).exec();
    },

    async read(deviceId) {
      const value = await redis.hget(keys.state, deviceId);
      return value === null ? null : parseState(deviceId, value);
    },

    async takeUnsaved(limit) {
      const result = await takeUnsavedScript([keys.state, keys.unsaved], [limit]);
      if (!Array.isArray(result)) return [];
      const states: LivenessState[] = [];
      for (let i = 0; i + 1 < result.length; i += 2) {
        const [id, value] = [result[i], result[i + 1]];
        const state = typeof id === 'string' && typeof value === 'string' ? parseState(id, value) : null;
        if (state) states.push(state);
      }
      return states;
    },

    async markUnsaved(states) {
      if (states.length === 0) return;
      await redis.zadd(keys.unsaved, 'GT', ...states.flatMap((s) => [s.seenMs, s.deviceId]));
    },
  };
}
