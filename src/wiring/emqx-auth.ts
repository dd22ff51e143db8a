import type { CredentialChange } from '../lib/credential-change.js';
import { createBoundedQueue } from '../lib/bounded-queue.js';
import { createKeyDigest } from '../lib/key-digest.js';
import { createPasswordHasher } from '../lib/password-hasher.js';
import type { DeviceDirectory } from '../modules/devices/device-directory.js';
import { createAuthMetrics } from '../modules/emqx-auth/auth-metrics.js';
import { createAuthThrottle } from '../modules/emqx-auth/auth-throttle.js';
import { createAuthnService } from '../modules/emqx-auth/authn-service.js';
import { createAuthzService } from '../modules/emqx-auth/authz-service.js';
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
 * feature: dropping cached verifications, and kicking the live session.
 */
export function wireEmqxAuth(deps: WiringContext & { directory: DeviceDirectory; sessions: SessionStore }) {
  const { config, infra, clock, log, directory } = deps;
  const settings = config.credentials;
  const redis = { redis: infra.redis.redis, keyPrefix: infra.redis.keyPrefix };
  const metrics = createAuthMetrics(deps.metrics);
  const verification = createVerificationRepository(infra.postgres.pool);
  const cache = createCredentialCache({ ...redis, secret: settings.cacheSecret, clock, ttlMs: settings.cacheTtlS * 1000 });
  const usage = createKeyUsageRecorder({ repository: verification, clock, log });
  const kicker = createSessionKicker({ ...redis, emqx: infra.emqx, metrics, log });

  const authn = createAuthnService({
    devices: directory,
    cache,
    findKey: createBatchLoader((ids) => verification.findKeys(ids)),
    repository: verification,
    keyDigest: createKeyDigest(settings.keyDigestSecret, settings.keyDigestSecretPrevious),
    hasher: createPasswordHasher(settings.argon2),
    hashQueue: createBoundedQueue({ concurrency: settings.hashConcurrency, maxWaitMs: settings.hashMaxWaitMs }),
    throttle: createAuthThrottle(redis),
    usage,
    duplicates: createDuplicateClientGuard({ policy: settings.duplicateClientPolicy, sessions: deps.sessions, emqx: infra.emqx, clock, log }),
    metrics,
    clock,
    hashBudgetMs: settings.hashMaxWaitMs,
  });
  return {
    authn,
    authz: createAuthzService({ devices: directory, metrics, commandReplies: config.commands.replies }),
    /** Drops the verifications the change names, in this replica's memory and in Redis. */
    forget: (change: CredentialChange) => cache.invalidate(change.device_id, change.key_id),
    /** Drops every verification held in this replica's memory. */
    forgetAll: () => cache.clearMemory(),
    /** Disconnects the device's live session through EMQX's REST API, once across replicas. */
    kick: (change: CredentialChange) => kicker.kick(change),
    /** Ends, on time, the sessions opened with keys that then got a not_after. */
    keyExpiry: createKeyExpirySweeper({
      repository: verification,
      sessions: deps.sessions,
      kicker,
      clock,
      log,
      onEnded: (outcome) => metrics.keySessionsEnded.inc({ outcome }),
    }),
    /** Writes the key usage still pending. */
    close: () => usage.close(),
  };
}
