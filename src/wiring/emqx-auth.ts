import { createBoundedQueue } from '../lib/bounded-queue.js';
import { createKeyDigest } from '../lib/key-digest.js';
import { createPasswordHasher } from '../lib/password-hasher.js';
import { createChangeRepository } from '../modules/changes/change-repository.js';
import type { DeviceDirectory } from '../modules/devices/device-directory.js';
import { countUnusableBodies, createAuthMetrics } from '../modules/emqx-auth/auth-metrics.js';
import { createAuthThrottle } from '../modules/emqx-auth/auth-throttle.js';
import { createAuthnService } from '../modules/emqx-auth/authn-service.js';
import { createAuthzService } from '../modules/emqx-auth/authz-service.js';
import { createServiceIdentity } from '../modules/emqx-auth/service-identity.js';
import { createCredentialCache } from '../modules/emqx-auth/credential-cache.js';
import { createDuplicateClientGuard } from '../modules/emqx-auth/duplicate-client-guard.js';
import { createKeyExpirySweeper } from '../modules/emqx-auth/key-expiry.js';
import { createKeyUsageRecorder } from '../modules/emqx-auth/key-usage.js';
import { createSessionKicker } from '../modules/emqx-auth/session-kicker.js';
import { createBatchLoader } from '../lib/batch-loader.js';
import { createVerificationRepository } from '../modules/emqx-auth/verification-repository.js';
import type { SessionStore } from '../modules/sessions/session-store.js';
import type { WiringContext } from './context.js';

/**
 * EMQX's two questions: may this client connect (`/emqx/authn`), may it use
 * this topic (`/emqx/authz`). Also what a credential change needs from this
 * feature: dropping cached verifications, ending the live session, and
 * queueing the session endings of keys whose not_after has come.
 */
export function wireEmqxAuth(
  deps: WiringContext & {
    directory: DeviceDirectory;
    sessions: SessionStore;
    /** Told when key expiry queued session endings. */
    kicksQueued: () => void;
  },
) {
  const { config, infra, clock, log, directory, lifecycle } = deps;
  const settings = config.credentials;
  const pool = infra.postgres.pool;
  const redis = { redis: infra.redis.redis, keyPrefix: infra.redis.keyPrefix };
  const metrics = createAuthMetrics(deps.metrics);
  const verification = createVerificationRepository(pool);
  const changes = createChangeRepository();
  const cache = createCredentialCache({ ...redis, secret: settings.cacheSecret, clock, ttlMs: settings.cacheTtlS * 1000 });
  const throttle = createAuthThrottle({ ...redis, clock });
  const usage = createKeyUsageRecorder({ repository: verification, clock, log });
  const kicker = createSessionKicker({ emqx: infra.emqx, sessions: deps.sessions, metrics, log });

  const authn = createAuthnService({
    devices: directory,
    cache,
    findKey: createBatchLoader((ids) => verification.findKeys(ids)),
    repository: verification,
    keyDigest: createKeyDigest(settings.keyDigestSecret, settings.keyDigestSecretPrevious),
    hasher: createPasswordHasher(settings.argon2),
    hashQueue: createBoundedQueue({ concurrency: settings.hashConcurrency, maxWaitMs: settings.hashMaxWaitMs }),
    throttle,
    usage,
    duplicates: createDuplicateClientGuard({ policy: settings.duplicateClientPolicy, sessions: deps.sessions, emqx: infra.emqx, clock, log }),
    metrics,
    clock,
    hashBudgetMs: settings.hashMaxWaitMs,
  });
  // Queues, on time, the endings of the sessions opened with keys that then got a not_after.
  const keyExpiry = createKeyExpirySweeper({
    queueKicks: (now, limit) => changes.queueKeyExpiryKicks(pool, now, limit),
    queued: deps.kicksQueued,
    clock,
    log,
  });
  lifecycle.onReady(() => keyExpiry.start());
  lifecycle.preClose(() => keyExpiry.stop());
  // The key usage the last requests recorded, written while Postgres is still open.
  lifecycle.onClose(() => usage.close());

  const subscriber = config.ingest.subscription;
  const serviceIdentity = subscriber
    ? createServiceIdentity({ username: subscriber.username, password: subscriber.password, shareGroup: subscriber.shareGroup })
    : null;
  return {
    authn,
    authz: createAuthzService({ devices: directory, metrics, commandReplies: config.commands.replies, serviceIdentity }),
    /** The telemetry subscriber's own identity (INGEST_MQTT_URL), or null. */
    serviceIdentity,
    /** Counts the bodies /emqx/authn and /emqx/authz refuse before asking the services. */
    unusableBodies: countUnusableBodies(metrics),
    /** Drops the device's verifications from this replica's memory. */
    forgetInMemory: (deviceId: string) => cache.forgetDevice(deviceId),
    /** Whether this replica holds verified credentials in memory, which it answers from without Postgres or Redis. */
    warm: () => cache.heldInMemory() > 0,
    /** Drops every verification held in this replica's memory. */
    forgetAllInMemory: () => cache.clearMemory(),
    /** Deletes the verifications of a key (or of the whole device) from Redis. */
    deleteStored: (deviceId: string, keyId?: string) => cache.deleteStored(deviceId, keyId),
    /** Forgets the device's failed attempts and known addresses (it was deleted). */
    forgetFailures: (deviceId: string) => throttle.forgetDevice(deviceId),
    /** Ends the device's live session through EMQX's REST API; throws when EMQX did not confirm it. */
    kick: kicker.kick,
  };
}
