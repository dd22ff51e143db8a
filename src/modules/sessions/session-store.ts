import type { RedisConnection } from '../../infra/redis.js';
import { defineRedisScript } from '../../infra/redis-script.js';
import { perSlot, slotTag } from '../../infra/redis-slots.js';
import { createTurnBatcher } from '../../lib/turn-batcher.js';

/**
 * What a connection authenticated with: an API key (by id) or the PSK. Known
 * when the duplicate-client claim carried it to the connect event (reject
 * policy); null when not recorded.
 */
export type SessionCredential = { readonly kind: 'key'; readonly keyId: string } | { readonly kind: 'psk' };

/** The MQTT session of a device as the rule-engine events describe it. */
export interface SessionState {
  readonly credential: SessionCredential | null;
  readonly connected: boolean;
  /** Milliseconds since the epoch, as EMQX stamps the connection; orders events. */
  readonly connectedAt: number;
  readonly disconnectedAt: number | null;
  readonly reason: string | null;
  readonly peer: string | null;
  readonly protoVer: string | null;
}

export interface ConnectedEvent {
  readonly connectedAt: number;
  readonly peer: string;
  readonly protoVer: string;
}

export interface DisconnectedEvent {
  readonly connectedAt: number;
  readonly disconnectedAt: number;
  readonly reason: string;
}

export interface SessionStore {
  get(deviceId: string): Promise<SessionState | null>;
  /** Applies a client.connected event; false when it was older than what is stored (or a repeat). */
  recordConnected(deviceId: string, event: ConnectedEvent): Promise<boolean>;
  /** Applies a client.disconnected event; false when it belongs to an older connection (or is a repeat). */
  recordDisconnected(deviceId: string, event: DisconnectedEvent): Promise<boolean>;
  /** Marks the stored connection `connectedAt` as gone (EMQX no longer knows it); false if a newer one is stored. */
  markStale(deviceId: string, connectedAt: number, at: number): Promise<boolean>;
  /**
   * A short exclusive claim on "this device is connecting now, with this
   * credential", and, when taken, the connection stored at that moment. The
   * connect event that follows records the credential with the session it opens.
   */
  claimConnecting(deviceId: string, ttlMs: number, credential: SessionCredential): Promise<ConnectClaim>;
  releaseConnecting(deviceId: string): Promise<void>;
  /** Drops everything stored about the device's sessions (the device was deleted; its id may be used again). */
  forget(deviceId: string): Promise<void>;
}

/**
 * Not taken: another CONNECT of the device holds the claim. Taken: with the
 * connected_at of the connection the store holds as open, or null when none is.
 */
export type ConnectClaim = { readonly taken: false } | { readonly taken: true; readonly connectedAt: number | null };

export interface SessionStoreOptions {
  redis: RedisConnection;
  keyPrefix: string;
  /** Session records expire when nothing touched them for this long. */
  ttlS?: number;
}

// Events arrive unordered and repeated (docs/emqx-contract.md §C), so each write is a
// compare-and-set on connected_at, done in Lua to be atomic across replicas.
//  - A connect older than the stored connection is ignored; a repeat of the
//    stored connection's connect after its disconnect does not revive it.
//  - A disconnect of an older connection is ignored, and so is one with reason
//    takenover/discarded: a newer session replaced it, so the device is still
//    connected. A disconnect of a connection newer than the stored one is
//    recorded (its connect event is late) and that connect is then ignored.
const RECORD_CONNECTED = `
local current = tonumber(redis.call('HGET', KEYS[1], 'connected_at') or '-1')
local incoming = tonumber(ARGV[1])
if current > incoming then return 0 end
if current == incoming and redis.call('HGET', KEYS[1], 'connected') == '0' then return 0 end
redis.call('HSET', KEYS[1], 'connected', '1', 'connected_at', ARGV[1], 'peer', ARGV[2], 'proto_ver', ARGV[3])
redis.call('HDEL', KEYS[1], 'disconnected_at', 'reason')
local credential = redis.call('GET', KEYS[2])
if credential then redis.call('HSET', KEYS[1], 'credential', credential) else redis.call('HDEL', KEYS[1], 'credential') end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[2])
return 1
`;

const RECORD_DISCONNECTED = `
local current = tonumber(redis.call('HGET', KEYS[1], 'connected_at') or '-1')
local incoming = tonumber(ARGV[1])
if current > incoming then return 0 end
if ARGV[3] == 'takenover' or ARGV[3] == 'discarded' then return 0 end
if current == incoming and redis.call('HGET', KEYS[1], 'connected') == '0' then return 0 end
redis.call('HSET', KEYS[1], 'connected', '0', 'connected_at', ARGV[1], 'disconnected_at', ARGV[2], 'reason', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[2])
return 1
`;

// Each claim (KEYS: claim, session; ARGV: credential, TTL ms; per claim, many
// per call, taken in order) and, when it is taken, the stored connection in
// one step. Each answer: 'taken:' followed by the open connection's
// connected_at (empty when none is open), or 'busy' when another CONNECT
// holds the claim (one earlier in the same call included).
const CLAIM_CONNECTING = `
local answers = {}
for i = 1, #KEYS, 2 do
  local answer = 'busy'
  if redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[i + 1], 'NX') then
    local state = redis.call('HMGET', KEYS[i + 1], 'connected', 'connected_at')
    answer = 'taken:' .. ((state[1] == '1' and state[2]) or '')
  end
  answers[#answers + 1] = answer
end
return answers
`;

interface ClaimRequest {
  deviceId: string;
  ttlMs: number;
  value: string;
}

const MARK_STALE = `
if redis.call('HGET', KEYS[1], 'connected') ~= '1' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'connected_at') or '-1') ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'connected', '0', 'disconnected_at', ARGV[2], 'reason', 'stale')
return 1
`;

function parseCredential(value: string | undefined): SessionCredential | null {
  if (value === 'psk') return { kind: 'psk' };
  if (value?.startsWith('key:')) return { kind: 'key', keyId: value.slice('key:'.length) };
  return null;
}

/**
 * Session state per device in Redis. Layout (under the key prefix):
 *  - `session:<device>` hash: connected ("1"/"0"), connected_at (ms),
 *    disconnected_at (ms), reason, peer, proto_ver, credential (`key:<id>`
 *    or `psk`, when the claim below carried it);
 *  - `session:connecting:<device>`: the short connect claim of the
 *    duplicate-client policy, holding the credential of the CONNECT it was
 *    made for; the next connect event copies it into the session, and the
 *    next connect or disconnect event drops it.
 * On a Redis Cluster the device id is a hash tag (`session:{<device>}`,
 * `session:connecting:{<device>}`): the scripts use both keys of a device.
 */
export function createSessionStore(options: SessionStoreOptions): SessionStore {
  const { redis, keyPrefix } = options;
  const ttlS = options.ttlS ?? 30 * 24 * 3600;
  const sessionKey = (deviceId: string) => `${keyPrefix}session:${slotTag(redis, deviceId)}`;
  const claimKey = (deviceId: string) => `${keyPrefix}session:connecting:${slotTag(redis, deviceId)}`;
  const recordConnected = defineRedisScript(redis, 'dlmSessionConnected', RECORD_CONNECTED, 2);
  const recordDisconnected = defineRedisScript(redis, 'dlmSessionDisconnected', RECORD_DISCONNECTED, 2);
  const markStale = defineRedisScript(redis, 'dlmSessionStale', MARK_STALE, 1);
  const claimScript = defineRedisScript(redis, 'dlmSessionClaim', CLAIM_CONNECTING, 'any');
  // The claims of one turn of the event loop (a reconnect storm makes many)
  // go to Redis in one script call; on a cluster, one per hash slot, and a
  // node that fails fails only the claims it holds.
  const claim = createTurnBatcher((requests: ClaimRequest[]) =>
    perSlot(redis, requests, ({ deviceId }) => claimKey(deviceId), async (group) => {
      const answers = await claimScript(
        group.flatMap(({ deviceId }) => [claimKey(deviceId), sessionKey(deviceId)]),
        group.flatMap(({ ttlMs, value }) => [value, ttlMs]),
      );
      if (!Array.isArray(answers)) throw new Error('unexpected answer to a connect claim');
      return answers.map((answer): ConnectClaim => {
        if (typeof answer !== 'string' || !answer.startsWith('taken:')) return { taken: false };
        const connectedAt = answer.slice('taken:'.length);
        return { taken: true, connectedAt: connectedAt === '' ? null : Number(connectedAt) };
      });
    }),
  );

  return {
    async get(deviceId) {
      const hash = await redis.hgetall(sessionKey(deviceId));
      if (hash.connected === undefined || hash.connected_at === undefined) return null;
      return {
        credential: parseCredential(hash.credential),
        connected: hash.connected === '1',
        connectedAt: Number(hash.connected_at),
        disconnectedAt: hash.disconnected_at === undefined ? null : Number(hash.disconnected_at),
        reason: hash.reason ?? null,
        peer: hash.peer ?? null,
        protoVer: hash.proto_ver ?? null,
      };
    },
    async recordConnected(deviceId, event) {
      const applied = await recordConnected(
        [sessionKey(deviceId), claimKey(deviceId)],
        [event.connectedAt, event.peer, event.protoVer, ttlS],
      );
      return applied === 1;
    },
    async recordDisconnected(deviceId, event) {
      const applied = await recordDisconnected(
        [sessionKey(deviceId), claimKey(deviceId)],
        [event.connectedAt, event.disconnectedAt, event.reason, ttlS],
      );
      return applied === 1;
    },
    async markStale(deviceId, connectedAt, at) {
      return (await markStale([sessionKey(deviceId)], [connectedAt, at])) === 1;
    },
    async claimConnecting(deviceId, ttlMs, credential) {
      const outcome = await claim({ deviceId, ttlMs, value: credential.kind === 'key' ? `key:${credential.keyId}` : 'psk' });
      if (!outcome.ok) throw outcome.error;
      return outcome.value;
    },
    async releaseConnecting(deviceId) {
      await redis.del(claimKey(deviceId));
    },
    async forget(deviceId) {
      await redis.del(sessionKey(deviceId), claimKey(deviceId));
    },
  };
}
