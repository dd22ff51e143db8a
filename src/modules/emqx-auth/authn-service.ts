import { parseApiKeyId } from '../../lib/api-key.js';
import { QueueFullError, type BoundedQueue } from '../../lib/bounded-queue.js';
import type { Clock } from '../../lib/clock.js';
import { isDeviceId } from '../../lib/identifiers.js';
import type { PasswordHasher } from '../../lib/password-hasher.js';
import type { DeviceDirectory } from '../devices/device-directory.js';
import type { AuthMetrics } from './auth-metrics.js';
import type { AuthThrottle } from './auth-throttle.js';
import type { CredentialCache, VerifiedCredential } from './credential-cache.js';
import type { VerificationRepository } from './verification-repository.js';
import type { DuplicateClientGuard } from './duplicate-client-guard.js';
import type { KeyUsageRecorder } from './key-usage.js';

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
      /** Where the verification came from: this process's memory, Redis, or argon2 now. */
      via: 'memory' | 'redis' | 'argon2';
    }
  | { result: 'deny'; reason: string }
  | { result: 'ignore'; reason: string };

export interface AuthnService {
  authenticate(request: AuthnRequest): Promise<AuthnDecision>;
}

/** Longer than any key or PSK the registry issues; longer input is refused before hashing. */
const MAX_SECRET_LENGTH = 1024;
const MAX_PEER_LENGTH = 64;

type Verification =
  | { kind: 'verified'; credential: VerifiedCredential; layer: 'redis' | 'argon2' }
  | { kind: 'deny'; reason: string }
  | { kind: 'ignore'; reason: string };

/**
 * Decides EMQX's "may this client connect?" (emqx-contract.md §A). Order of
 * checks, cheapest first: identity shape → in-memory cache → Redis cache →
 * device → throttle → stored key/PSK → argon2 (bounded). Anything that cannot
 * be decided because a dependency failed is `ignore`; only a verification
 * (now, or cached from before) ever yields `allow`.
 */
export function createAuthnService(deps: {
  devices: Pick<DeviceDirectory, 'get' | 'peek'>;
  cache: CredentialCache;
  repository: Pick<VerificationRepository, 'findKey' | 'findPskHash'>;
  hasher: Pick<PasswordHasher, 'verify'>;
  hashQueue: BoundedQueue;
  throttle: AuthThrottle;
  usage: KeyUsageRecorder;
  duplicates: DuplicateClientGuard;
  metrics: AuthMetrics;
  clock: Clock;
  /** The time from a cache miss to a verified answer, beyond which the answer is ignore. */
  hashBudgetMs: number;
}): AuthnService {
  const { hashBudgetMs } = deps;
  const { devices, cache, repository, hasher, hashQueue, throttle, usage, duplicates, metrics, clock } = deps;
  const inFlight = new Map<string, Promise<Verification>>();

  const failed = (deviceId: string | null, peer: string, reason: string): Verification => {
    throttle.recordFailure(deviceId, peer).catch(() => undefined);
    return { kind: 'deny', reason };
  };

  /** Is the device, as far as memory knows, still there and enabled? Undefined = not cached. */
  const deviceUsable = (deviceId: string): boolean | undefined => {
    const device = devices.peek(deviceId);
    return device === undefined ? undefined : device !== null && !device.disabled;
  };

  async function verify(deviceId: string, password: string, peer: string, cacheKey: string): Promise<Verification> {
    const receivedAt = performance.now();
    const budgetLeft = () => hashBudgetMs - (performance.now() - receivedAt);
    const generation = cache.generation(deviceId);
    try {
      const cached = await cache.fetch(cacheKey, deviceId);
      metrics.cache.inc({ layer: 'redis', outcome: cached ? 'hit' : 'miss' });
      if (cached) return { kind: 'verified', credential: cached, layer: 'redis' };
    } catch {
      return { kind: 'ignore', reason: 'redis_unavailable' };
    }
    // In a cold reconnect storm most requests cannot be hashed in time: refuse
    // those before spending database round trips on them.
    if (!hashQueue.wouldAdmit(budgetLeft())) {
      metrics.hashRejected.inc();
      return { kind: 'ignore', reason: 'hash_queue_full' };
    }

    let device;
    try {
      device = await devices.get(deviceId);
    } catch {
      return { kind: 'ignore', reason: 'postgres_unavailable' };
    }
    if (!device) return failed(null, peer, 'unknown_device');
    if (device.disabled) return { kind: 'deny', reason: 'device_disabled' };

    try {
      const blockedBy = await throttle.blockedBy(deviceId, peer);
      if (blockedBy) {
        metrics.throttled.inc({ scope: blockedBy });
        return { kind: 'deny', reason: 'throttled' };
      }
    } catch {
      return { kind: 'ignore', reason: 'redis_unavailable' };
    }

    const keyId = parseApiKeyId(password);
    let storedHash: string | null;
    let notAfter: number | null = null;
    try {
      if (keyId) {
        const key = await repository.findKey(keyId);
        // A key of another device is as good as no key: same answer, same counters.
        if (!key || key.deviceId !== deviceId) return failed(deviceId, peer, 'unknown_key');
        if (key.revoked) return failed(deviceId, peer, 'key_revoked');
        if (key.notAfter !== null && key.notAfter <= clock()) return failed(deviceId, peer, 'key_expired');
        storedHash = key.hash;
        notAfter = key.notAfter;
      } else {
        storedHash = await repository.findPskHash(deviceId);
        if (storedHash === null) return failed(deviceId, peer, 'no_psk');
      }
    } catch {
      return { kind: 'ignore', reason: 'postgres_unavailable' };
    }

    let matches: boolean;
    try {
      metrics.hashQueueDepth.set(hashQueue.waiting);
      matches = await hashQueue.run(async () => {
        const stopTimer = metrics.hashVerify.startTimer();
        try {
          return await hasher.verify(storedHash, password);
        } finally {
          stopTimer();
        }
      }, budgetLeft());
    } catch (error) {
      if (error instanceof QueueFullError) {
        metrics.hashRejected.inc();
        return { kind: 'ignore', reason: 'hash_queue_full' };
      }
      return { kind: 'ignore', reason: 'hash_failed' };
    } finally {
      metrics.hashQueueDepth.set(hashQueue.waiting);
    }
    if (!matches) return failed(deviceId, peer, 'wrong_secret');

    const credential: VerifiedCredential = { deviceId, tenantId: device.tenantId, keyId, notAfter };
    // Both writes are best effort: the secret is verified, and a cache or counter
    // that could not be written only costs a later verify.
    await cache.store(cacheKey, credential, generation).catch(() => undefined);
    throttle.recordSuccess(deviceId).catch(() => undefined);
    return { kind: 'verified', credential, layer: 'argon2' };
  }

  /** Everything after the secret is known to be right: expiry, the device, the duplicate policy. */
  async function admit(deviceId: string, cacheKey: string, credential: VerifiedCredential, via: 'memory' | 'redis' | 'argon2'): Promise<AuthnDecision> {
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
    if (deviceUsable(deviceId) === false) return { result: 'deny', reason: 'device_unusable' };

    const duplicate = await duplicates.check(deviceId);
    if (duplicate === 'duplicate' || duplicate === 'connecting') return { result: 'deny', reason: `session_${duplicate}` };
    if (duplicate === 'unknown') return { result: 'ignore', reason: 'emqx_unavailable' };
    if (credential.keyId) usage.record(credential.keyId);
    return { result: 'allow', deviceId, tenantId: credential.tenantId, expireAt, via };
  }

  async function decide(request: AuthnRequest): Promise<AuthnDecision> {
    const { clientid, username, password } = request;
    if (clientid !== username) return { result: 'deny', reason: 'clientid_not_username' };
    if (!isDeviceId(username)) return { result: 'deny', reason: 'malformed_device_id' };
    if (password.length === 0) return { result: 'deny', reason: 'empty_password' };
    if (password.length > MAX_SECRET_LENGTH) return { result: 'deny', reason: 'oversized_password' };
    const deviceId = username;
    if (deviceUsable(deviceId) === false) return { result: 'deny', reason: 'device_unusable' };

    const cacheKey = cache.keyFor(deviceId, password);
    const credential = cache.peek(cacheKey);
    metrics.cache.inc({ layer: 'memory', outcome: credential ? 'hit' : 'miss' });
    if (credential) return admit(deviceId, cacheKey, credential, 'memory');

    let pending = inFlight.get(cacheKey);
    if (!pending) {
      const peer = request.peerhost.slice(0, MAX_PEER_LENGTH);
      pending = verify(deviceId, password, peer, cacheKey).finally(() => inFlight.delete(cacheKey));
      inFlight.set(cacheKey, pending);
    }
    const verification = await pending;
    return verification.kind === 'verified'
      ? admit(deviceId, cacheKey, verification.credential, verification.layer)
      : { result: verification.kind, reason: verification.reason };
  }

  const counted = (decision: AuthnDecision): AuthnDecision => {
    metrics.authn.inc({ result: decision.result, reason: decision.result === 'allow' ? decision.via : decision.reason });
    return decision;
  };

  return {
    async authenticate(request) {
      return counted(await decide(request));
    },
  };
}
