import { parseApiKeyId } from '../../lib/api-key.js';
import { QueueFullError, type BoundedQueue } from '../../lib/bounded-queue.js';
import type { Clock } from '../../lib/clock.js';
import type { KeyDigest } from '../../lib/key-digest.js';
import { andThen } from '../../lib/and-then.js';
import { isDeviceId } from '../../lib/identifiers.js';
import type { PasswordHasher } from '../../lib/password-hasher.js';
import type { DeviceDirectory } from '../devices/device-directory.js';
import type { DeviceRecord } from '../devices/device-repository.js';
import type { AuthMetrics } from './auth-metrics.js';
import type { AuthThrottle, SecretKind } from './auth-throttle.js';
import type { CacheKey, CredentialCache, VerifiedCredential } from './credential-cache.js';
import type { StoredKey, VerificationRepository } from './verification-repository.js';
import type { DuplicateClientGuard } from './duplicate-client-guard.js';
import type { KeyUsageRecorder } from './key-usage.js';
import type { SessionCredential } from '../sessions/session-store.js';

export interface AuthnRequest {
  readonly clientid: string;
  readonly username: string;
  readonly password: string;
  readonly peerhost: string;
}

export type AuthnDecision =
  | {
      result: 'allow';
      deviceId: string;
      tenantId: string;
      /** Unix seconds */
      expireAt: number | null;
      via: VerifiedVia;
    }
  | { result: 'deny'; reason: string }
  | { result: 'ignore'; reason: string };

/** A decision now, or once a dependency has answered. */
type Answer = AuthnDecision | Promise<AuthnDecision>;

export interface AuthnService {
  /** Synchronous when the answer needs no I/O: a verification and a device held in memory, or a request refused on its face. */
  authenticate(request: AuthnRequest): Answer;
}

/** Longer than any key or PSK the registry issues; longer input is refused before any check. */
const MAX_SECRET_LENGTH = 1024;
const MAX_PEER_LENGTH = 64;

/** Where a verification came from: this process's memory, Redis, or a check now against a key digest or an argon2 hash. */
export type VerifiedVia = 'memory' | 'redis' | 'digest' | 'argon2';

type Verification =
  | { kind: 'verified'; credential: VerifiedCredential; layer: Exclude<VerifiedVia, 'memory'> }
  | { kind: 'deny'; reason: string }
  | { kind: 'ignore'; reason: string };

/** The presented secret is the stored one. */
type Match = { kind: 'match'; keyId: string | null; notAfter: number | null; layer: 'digest' | 'argon2' };

/**
 * A verification against the device as it stands: made under its current
 * credential version; void (a change came after it); the device is gone or
 * disabled; or unknown (Postgres cannot be asked and nothing is cached).
 */
type Standing = 'current' | 'void' | 'unusable' | 'unknown';

/**
 * Decides EMQX's "may this client connect?" (docs/emqx-contract.md §A). Order of
 * checks, cheapest first: identity shape → in-memory cache → Redis cache →
 * device → throttle → stored key or PSK (these three read at once) → its
 * digest or argon2 hash (argon2 bounded). Anything that cannot be decided
 * because a dependency failed is `ignore`; only a verification (now, or
 * cached from before) ever yields `allow`, and only while the device still
 * has the credential version it was made under: a verification that a change
 * overtook (a PSK can wait in the hash queue for ARGON2_MAX_WAIT_MS) is made
 * again before the answer.
 */
export function createAuthnService(deps: {
  devices: Pick<DeviceDirectory, 'get' | 'peek' | 'refresh'>;
  cache: CredentialCache;
  /** A stored key by id (the wiring batches concurrent lookups into one query). */
  findKey(keyId: string): Promise<StoredKey | null>;
  repository: Pick<VerificationRepository, 'findPskHash' | 'restoreKey'>;
  keyDigest: KeyDigest;
  hasher: Pick<PasswordHasher, 'verify'>;
  hashQueue: BoundedQueue;
  throttle: AuthThrottle;
  usage: KeyUsageRecorder;
  duplicates: DuplicateClientGuard;
  metrics: AuthMetrics;
  clock: Clock;
  /** The time from a cache miss to a verified answer, beyond which an argon2 check is answered ignore. */
  hashBudgetMs: number;
}): AuthnService {
  const { hashBudgetMs } = deps;
  const { devices, cache, repository, keyDigest, hasher, hashQueue, throttle, usage, duplicates, metrics, clock } = deps;
  const inFlight = new Map<string, Promise<Verification>>();

  const failed = (deviceId: string | null, peer: string, secret: SecretKind, reason: string): Verification => {
    throttle.recordFailure(deviceId, peer, secret).catch(() => undefined);
    return { kind: 'deny', reason };
  };

  /** Whether `credential` still admits `device` as it stands. */
  function standingOf(device: DeviceRecord | null, credential: VerifiedCredential): Standing {
    if (device === null || device.disabled) return 'unusable';
    return device.credentialVersion === credential.version && device.tenantId === credential.tenantId ? 'current' : 'void';
  }

  /** The same, with the device read from Postgres (the directory does not hold it, or a fresh read is wanted). */
  async function standingRead(deviceId: string, credential: VerifiedCredential, fresh: boolean): Promise<Standing> {
    try {
      return standingOf(fresh ? await devices.refresh(deviceId) : await devices.get(deviceId), credential);
    } catch {
      return 'unknown';
    }
  }

  /** Is the device, as far as memory knows, still there and enabled? Undefined = not cached. */
  const deviceUsable = (deviceId: string): boolean | undefined => {
    const device = devices.peek(deviceId);
    return device === undefined ? undefined : device !== null && !device.disabled;
  };

  /** argon2, bounded: true/false, or ignore when it could not finish within the budget. */
  async function argon2(stored: string, password: string, budgetMs: number): Promise<boolean | Verification> {
    try {
      metrics.hashQueueDepth.set(hashQueue.waiting);
      return await hashQueue.run(async () => {
        const stopTimer = metrics.hashVerify.startTimer();
        try {
          return await hasher.verify(stored, password);
        } finally {
          stopTimer();
        }
      }, budgetMs);
    } catch (error) {
      if (error instanceof QueueFullError) {
        metrics.hashRejected.inc();
        return { kind: 'ignore', reason: 'hash_queue_full' };
      }
      return { kind: 'ignore', reason: 'hash_failed' };
    } finally {
      metrics.hashQueueDepth.set(hashQueue.waiting);
    }
  }

  /**
   * Stores a verified key as its digest under the current secret. Best effort:
   * the key is verified either way, and a write that failed is tried again at
   * the device's next uncached connect.
   */
  async function restore(key: StoredKey, password: string, from: 'argon2id' | 'previous_secret') {
    const result = await repository.restoreKey(key.id, key.hash, keyDigest.digest(password)).then(
      () => 'ok' as const,
      () => 'failed' as const,
    );
    metrics.keysRestored.inc({ from, result });
  }

  async function checkKey(
    deviceId: string,
    keyId: string,
    found: Promise<StoredKey | null>,
    password: string,
    peer: string,
    budgetMs: () => number,
  ): Promise<Match | Verification> {
    let key: StoredKey | null;
    try {
      key = await found;
    } catch {
      return { kind: 'ignore', reason: 'postgres_unavailable' };
    }
    // A key of another device is as good as no key: same answer, same counters.
    if (!key || key.deviceId !== deviceId) return failed(deviceId, peer, 'key', 'unknown_key');
    if (key.revoked) return failed(deviceId, peer, 'key', 'key_revoked');
    if (key.notAfter !== null && key.notAfter <= clock()) return failed(deviceId, peer, 'key', 'key_expired');
    const match: Match = { kind: 'match', keyId, notAfter: key.notAfter, layer: 'digest' };
    if (key.scheme === 'hmac-sha256') {
      const secret = keyDigest.match(key.hash, password);
      if (secret === null) return failed(deviceId, peer, 'key', 'wrong_secret');
      // Digested under the secret being rotated out: moved to the current one as the device connects.
      if (secret === 'previous') await restore(key, password, 'previous_secret');
      return match;
    }
    // Issued before keys were digests: verified with argon2 once, then stored as a digest.
    const verified = await argon2(key.hash, password, budgetMs());
    if (verified !== true) return verified === false ? failed(deviceId, peer, 'key', 'wrong_secret') : verified;
    await restore(key, password, 'argon2id');
    return { ...match, layer: 'argon2' };
  }

  async function checkPsk(deviceId: string, found: Promise<string | null>, password: string, peer: string, budgetMs: () => number): Promise<Match | Verification> {
    let stored: string | null;
    try {
      stored = await found;
    } catch {
      return { kind: 'ignore', reason: 'postgres_unavailable' };
    }
    if (stored === null) return failed(deviceId, peer, 'psk', 'no_psk');
    const verified = await argon2(stored, password, budgetMs());
    if (verified !== true) return verified === false ? failed(deviceId, peer, 'psk', 'wrong_secret') : verified;
    return { kind: 'match', keyId: null, notAfter: null, layer: 'argon2' };
  }

  async function verify(deviceId: string, password: string, peer: string, cacheKey: CacheKey, useCache: boolean): Promise<Verification> {
    const receivedAt = performance.now();
    const budgetLeft = () => hashBudgetMs - (performance.now() - receivedAt);
    const generation = cache.generation(deviceId);
    if (useCache) {
      try {
        const cached = await cache.fetch(cacheKey, deviceId);
        metrics.cache.inc({ layer: 'redis', outcome: cached ? 'hit' : 'miss' });
        if (cached) return { kind: 'verified', credential: cached, layer: 'redis' };
      } catch {
        return { kind: 'ignore', reason: 'redis_unavailable' };
      }
    }
    const keyId = parseApiKeyId(password);
    const secretKind: SecretKind = keyId === null ? 'psk' : 'key';
    // A PSK is checked with argon2. In a cold reconnect storm most of those
    // cannot be hashed in time: they are refused before any database round trip.
    if (keyId === null && !hashQueue.wouldAdmit(budgetLeft())) {
      metrics.hashRejected.inc();
      return { kind: 'ignore', reason: 'hash_queue_full' };
    }

    // The device, the throttle state and the stored key or PSK are read side
    // by side (one round trip instead of three) and judged in that order. A
    // read whose answer goes unused (the device is unknown) is left to settle.
    const throttleState = throttle.check(deviceId, peer, secretKind);
    const secret = keyId === null ? { keyId, psk: repository.findPskHash(deviceId) } : { keyId, key: deps.findKey(keyId) };
    for (const read of [throttleState, secret.keyId === null ? secret.psk : secret.key]) read.catch(() => undefined);

    let device;
    try {
      device = await devices.get(deviceId);
    } catch {
      return { kind: 'ignore', reason: 'postgres_unavailable' };
    }
    if (!device) return failed(null, peer, secretKind, 'unknown_device');
    if (device.disabled) return { kind: 'deny', reason: 'device_disabled' };

    let pairFailed: boolean;
    try {
      const state = await throttleState;
      if (state.blockedBy) {
        metrics.throttled.inc({ scope: state.blockedBy });
        return { kind: 'deny', reason: 'throttled' };
      }
      pairFailed = state.pairFailed;
    } catch {
      return { kind: 'ignore', reason: 'redis_unavailable' };
    }

    const checked =
      secret.keyId === null
        ? await checkPsk(deviceId, secret.psk, password, peer, budgetLeft)
        : await checkKey(deviceId, secret.keyId, secret.key, password, peer, budgetLeft);
    if (checked.kind !== 'match') return checked;
    const credential: VerifiedCredential = {
      deviceId,
      tenantId: device.tenantId,
      keyId: checked.keyId,
      notAfter: checked.notAfter,
      version: device.credentialVersion,
    };
    // Both writes are best effort and not waited for: the secret is verified,
    // and a cache or counter that could not be written only costs a later
    // verify. (The cache's memory layer is filled at once; the Redis write
    // goes out with the others of this turn of the event loop.)
    cache.store(cacheKey, credential, generation).catch(() => undefined);
    if (pairFailed || secretKind === 'psk') throttle.recordSuccess(deviceId, peer, secretKind, pairFailed).catch(() => undefined);
    return { kind: 'verified', credential, layer: checked.layer };
  }

  /** The device's standing: from memory when held there (and `fresh` is not asked for), else read from Postgres. */
  function standingNow(deviceId: string, credential: VerifiedCredential, fresh: boolean): Standing | Promise<Standing> {
    const known = fresh ? undefined : devices.peek(deviceId);
    return known === undefined ? standingRead(deviceId, credential, fresh) : standingOf(known, credential);
  }

  /**
   * Everything after the secret is known to be right: expiry, the device as it
   * stands, the duplicate policy. Answered at once when all of that is in
   * memory (a cached verification, the device held, the takeover policy).
   */
  function admit(request: AuthnRequest, cacheKey: CacheKey, credential: VerifiedCredential, via: VerifiedVia, fresh: boolean): Answer {
    const deviceId = credential.deviceId;
    // A key past not_after stops working even while its verification is cached.
    // expire_at is whole seconds and EMQX requires it in the future.
    let expireAt: number | null = null;
    if (credential.notAfter !== null) {
      expireAt = Math.floor(credential.notAfter / 1000);
      if (expireAt * 1000 <= clock()) {
        cache.drop(cacheKey);
        return { result: 'deny', reason: 'key_expired' };
      }
    }

    // An argon2 check can have waited long enough for a change to land
    // meanwhile: its device is read again. Cached verifications keep working
    // while Postgres is away (the directory's last word, or none).
    const cached = via === 'memory' || via === 'redis';
    return andThen(standingNow(deviceId, credential, via === 'argon2'), (before) => {
      if (before === 'unknown' && !cached) return { result: 'ignore', reason: 'postgres_unavailable' };
      if (before === 'unusable') return { result: 'deny', reason: 'device_unusable' };
      if (before === 'void') return again(request, cacheKey, fresh);

      const session: SessionCredential = credential.keyId === null ? { kind: 'psk' } : { kind: 'key', keyId: credential.keyId };
      return andThen(duplicates.check(deviceId, session), (duplicate) => {
        if (duplicate === 'duplicate' || duplicate === 'connecting') return { result: 'deny', reason: `session_${duplicate}` };
        if (duplicate === 'unknown') return { result: 'ignore', reason: 'emqx_unavailable' };
        // The duplicate check may have asked EMQX: a change that landed meanwhile is seen here, before the answer.
        return andThen(standingNow(deviceId, credential, false), (after) => {
          if (after === 'unusable' || after === 'void') {
            return duplicates.release(deviceId).then(() => (after === 'unusable' ? { result: 'deny', reason: 'device_unusable' } : again(request, cacheKey, fresh)));
          }
          if (credential.keyId) usage.record(credential.keyId);
          return { result: 'allow', deviceId, tenantId: credential.tenantId, expireAt, via };
        });
      });
    });
  }

  /** The verification was void by the time of the answer: once more, from the stored credential, or ignore if that is overtaken too. */
  function again(request: AuthnRequest, cacheKey: CacheKey, fresh: boolean): Answer {
    cache.drop(cacheKey);
    if (fresh) return { result: 'ignore', reason: 'credential_changing' };
    return decide(request, true);
  }

  function decide(request: AuthnRequest, fresh = false): Answer {
    const { clientid, username, password } = request;
    if (clientid !== username) return { result: 'deny', reason: 'clientid_not_username' };
    if (!isDeviceId(username)) return { result: 'deny', reason: 'malformed_device_id' };
    if (password.length === 0) return { result: 'deny', reason: 'empty_password' };
    if (password.length > MAX_SECRET_LENGTH) return { result: 'deny', reason: 'oversized_password' };
    const deviceId = username;
    if (deviceUsable(deviceId) === false) return { result: 'deny', reason: 'device_unusable' };

    const cacheKey = cache.keyFor(deviceId, password);
    if (!fresh) {
      const credential = cache.peek(cacheKey);
      metrics.cache.inc({ layer: 'memory', outcome: credential ? 'hit' : 'miss' });
      if (credential) return admit(request, cacheKey, credential, 'memory', fresh);
    }
    return verifyThenAdmit(request, cacheKey, fresh);
  }

  /**
   * Concurrent CONNECTs with the same secret share one verification; a fresh
   * one (the cached verification was void) is not shared with one that may
   * still return that cached answer.
   */
  async function verifyThenAdmit(request: AuthnRequest, cacheKey: CacheKey, fresh: boolean): Promise<AuthnDecision> {
    const flightKey = fresh ? `fresh:${cacheKey.memory}` : cacheKey.memory;
    let pending = inFlight.get(flightKey);
    if (!pending) {
      const peer = request.peerhost.slice(0, MAX_PEER_LENGTH);
      pending = verify(request.username, request.password, peer, cacheKey, !fresh).finally(() => inFlight.delete(flightKey));
      inFlight.set(flightKey, pending);
    }
    const verification = await pending;
    return verification.kind === 'verified'
      ? admit(request, cacheKey, verification.credential, verification.layer, fresh)
      : { result: verification.kind, reason: verification.reason };
  }

  const counted = (decision: AuthnDecision): AuthnDecision => {
    metrics.authn.inc({ result: decision.result, reason: decision.result === 'allow' ? decision.via : decision.reason });
    return decision;
  };

  return {
    authenticate: (request) => andThen(decide(request), counted),
  };
}
