import { availableParallelism } from 'node:os';
import type { FastifyBaseLogger } from 'fastify';
import type { Registry } from 'prom-client';
import type { Config } from './config.js';
import { createCredentialChangeBus } from './infra/credential-changes.js';
import type { Infra } from './infra/index.js';
import { createBoundedQueue } from './lib/bounded-queue.js';
import type { Clock } from './lib/clock.js';
import { createPasswordHasher } from './lib/password-hasher.js';
import { createTopicNames } from './lib/topics.js';
import { createDeviceDirectory } from './modules/devices/device-directory.js';
import { createAuthMetrics } from './modules/emqx-auth/auth-metrics.js';
import { createAuthThrottle } from './modules/emqx-auth/auth-throttle.js';
import { createAuthnService } from './modules/emqx-auth/authn-service.js';
import { createAuthzService } from './modules/emqx-auth/authz-service.js';
import { createCredentialCache } from './modules/emqx-auth/credential-cache.js';
import { createCredentialRepository } from './modules/emqx-auth/credential-repository.js';
import { createDuplicateClientGuard } from './modules/emqx-auth/duplicate-client-guard.js';
import { createKeyUsageRecorder } from './modules/emqx-auth/key-usage.js';
import { createSessionKicker } from './modules/emqx-auth/session-kicker.js';
import type { EventHandler } from './modules/emqx-events/events-routes.js';
import { createSessionEventHandlers } from './modules/sessions/session-events.js';
import { createSessionStore } from './modules/sessions/session-store.js';

export interface CompositionInput {
  config: Config;
  infra: Infra;
  clock: Clock;
  metrics: Registry;
  log: FastifyBaseLogger;
}

/** The one place where services are created and handed their dependencies. */
export function createServices({ config, infra, clock, metrics, log }: CompositionInput) {
  const topics = createTopicNames(config.kafka.topicPrefix);
  const changes = createCredentialChangeBus(infra.redis, log);
  const devices = createDeviceDirectory({ pool: infra.postgres.pool, changes, clock });
  const redis = { redis: infra.redis.redis, keyPrefix: infra.redis.keyPrefix };

  const sessions = createSessionStore(redis);
  const authMetrics = createAuthMetrics(metrics);
  const credentials = createCredentialRepository(infra.postgres.pool);
  const { credentials: settings } = config;
  const authn = createAuthnService({
    devices,
    cache: createCredentialCache({ ...redis, secret: settings.cacheSecret, clock, ttlMs: settings.cacheTtlS * 1000 }),
    repository: credentials,
    hasher: createPasswordHasher(settings.argon2),
    hashQueue: createBoundedQueue({
      // One core is left to the event loop: argon2 on every core starves the
      // requests that are only cache hits or refusals.
      concurrency: settings.hashConcurrency || Math.max(1, availableParallelism() - 1),
      maxWaitMs: settings.hashMaxWaitMs,
    }),
    throttle: createAuthThrottle(redis),
    usage: createKeyUsageRecorder({ repository: credentials, clock, log }),
    duplicates: createDuplicateClientGuard({ policy: settings.duplicateClientPolicy, sessions, emqx: infra.emqx, clock, log }),
    kicker: createSessionKicker({ ...redis, emqx: infra.emqx, metrics: authMetrics, log }),
    changes,
    metrics: authMetrics,
    clock,
    log,
    hashBudgetMs: settings.hashMaxWaitMs,
  });
  const authz = createAuthzService({ devices, metrics: authMetrics });

  const eventHandlers: Record<string, EventHandler> = { ...createSessionEventHandlers({ sessions, log }) };
  const close = () => authn.close();
  return { topics, changes, devices, sessions, authn, authz, eventHandlers, close };
}

export type Services = ReturnType<typeof createServices>;
