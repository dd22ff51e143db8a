import type { Redis } from 'ioredis';
import { defineRedisScript } from '../../infra/redis-script.js';

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
}

/**
 * Not taken: another CONNECT of the device holds the claim. Taken: with the
 * connected_at of the connection the store holds as open, or null when none is.
 */
export type ConnectClaim = { readonly taken: false } | { readonly taken: true; readonly connectedAt: number | null };

export interface SessionStoreOptions {
  redis: Redis;
  keyPrefix: string;
  /** Session records expire when nothing touched them for this long. */
  ttlS?: number;
}

// Events arrive unordered and repeated (emqx-contract.md §C), so each write is a
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

// The claim (KEYS[1], ARGV: credential, TTL ms) and, when it is taken, the
// stored connection (KEYS[2]) in one step: nil when not taken, else the open
// connection's connected_at or "" when there is none.
const CLAIM_CONNECTING = `
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return false end
local state = redis.call('HMGET', KEYS[2], 'connected', 'connected_at')
if state[1] == '1' and state[2] then return state[2] end
return ''
`;

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
 *  - `session:{deviceId}` hash: connected ("1"/"0"), connected_at (ms),
 *    disconnected_at (ms), reason, peer, proto_ver, credential (`key:{id}`
 *    or `psk`, when the claim below carried it);
 *  - `session:connecting:{deviceId}`: the short connect claim of the
 *    duplicate-client policy, holding the credential of the CONNECT it was
 *    made for; the next connect event copies it into the session, and the
 *    next connect or disconnect event drops it.
 */
export function createSessionStore(options: SessionStoreOptions): SessionStore {
  const { redis, keyPrefix } = options;
  const ttlS = options.ttlS ?? 30 * 24 * 3600;
  const sessionKey = (deviceId: string) => `${keyPrefix}session:${deviceId}`;
  const claimKey = (deviceId: string) => `${keyPrefix}session:connecting:${deviceId}`;
  const recordConnected = defineRedisScript(redis, 'dlmSessionConnected', RECORD_CONNECTED, 2);
  const recordDisconnected = defineRedisScript(redis, 'dlmSessionDisconnected', RECORD_DISCONNECTED, 2);
  const markStale = defineRedisScript(redis, 'dlmSessionStale', MARK_STALE, 1);
  const claimConnecting = defineRedisScript(redis, 'dlmSessionClaim', CLAIM_CONNECTING, 2);

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
      const value = credential.kind === 'key' ? `key:${credential.keyId}` : 'psk';
      const open = await claimConnecting([claimKey(deviceId), sessionKey(deviceId)], [value, ttlMs]);
      if (open === null) return { taken: false };
      return { taken: true, connectedAt: typeof open === 'string' && open !== '' ? Number(open) : null };
    },
    async releaseConnecting(deviceId) {
      await redis.del(claimKey(deviceId));
    },
  };
}
