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
import { createAdminTokenRepository } from './modules/admin-tokens/admin-token-repository.js';
import { createAdminTokenService } from './modules/admin-tokens/admin-token-service.js';
import { createAuditRepository } from './modules/audit/audit-repository.js';
import { createCredentialRepository } from './modules/credentials/credential-repository.js';
import { createCredentialService } from './modules/credentials/credential-service.js';
import { createDeviceDirectory } from './modules/devices/device-directory.js';
import { createDeviceRepository } from './modules/devices/device-repository.js';
import { createDeviceService } from './modules/devices/device-service.js';
import type { EventHandler } from './modules/emqx-events/events-routes.js';
import { createDeviceEventProducer } from './modules/device-events/device-event-producer.js';
import { createDeviceStatusService } from './modules/liveness/device-status-service.js';
import { createLivenessMetrics } from './modules/liveness/liveness-metrics.js';
import { createLivenessRepository } from './modules/liveness/liveness-repository.js';
import { createLivenessService } from './modules/liveness/liveness-service.js';
import { createLivenessStore } from './modules/liveness/liveness-store.js';
import { createLivenessSweeper } from './modules/liveness/liveness-sweeper.js';
import { sessionLookup } from './modules/liveness/session-lookup.js';
import { createTenantRepository } from './modules/tenants/tenant-repository.js';
import { createTenantService } from './modules/tenants/tenant-service.js';
import { createAuthMetrics } from './modules/emqx-auth/auth-metrics.js';
import { createAuthThrottle } from './modules/emqx-auth/auth-throttle.js';
import { createAuthnService } from './modules/emqx-auth/authn-service.js';
import { createAuthzService } from './modules/emqx-auth/authz-service.js';
import { createCredentialCache } from './modules/emqx-auth/credential-cache.js';
import { createVerificationRepository } from './modules/emqx-auth/verification-repository.js';
import { createDuplicateClientGuard } from './modules/emqx-auth/duplicate-client-guard.js';
import { createKeyUsageRecorder } from './modules/emqx-auth/key-usage.js';
import { createSessionKicker } from './modules/emqx-auth/session-kicker.js';
import { createSessionEventHandlers } from './modules/sessions/session-events.js';
import { createSessionStore } from './modules/sessions/session-store.js';
import { createMessageDedup } from './modules/telemetry/message-dedup.js';
import { createProduceBatcher } from './modules/telemetry/produce-batcher.js';
import { createTelemetryIngest } from './modules/telemetry/telemetry-ingest.js';
import { createTelemetryMetrics } from './modules/telemetry/telemetry-metrics.js';
import { createTenantIdRepository } from './modules/topics/tenant-id-repository.js';
import { createTopicProvisioner, createTopicReconciliation } from './modules/topics/topic-provisioner.js';

export interface CompositionInput {
  config: Config;
  infra: Infra;
  clock: Clock;
  metrics: Registry;
  log: FastifyBaseLogger;
}

/** The one place where services are created and handed their dependencies. */
export function createServices({ config, infra, clock, metrics, log }: CompositionInput) {
  const pool = infra.postgres.pool;
  const topics = createTopicNames(config.kafka.topicPrefix);
  const changes = createCredentialChangeBus(infra.redis, log);
  const { credentials: settings } = config;
  const hasher = createPasswordHasher(settings.argon2);
  const redis = { redis: infra.redis.redis, keyPrefix: infra.redis.keyPrefix };
  const topicProvisioner = createTopicProvisioner({
    kafka: infra.kafka,
    topics,
    partitions: config.kafka.topicPartitions,
    replicationFactor: config.kafka.topicReplicationFactor,
  });
  const topicReconciliation = createTopicReconciliation({
    provisioner: topicProvisioner,
    listTenantIds: createTenantIdRepository(pool).listTenantIds,
    log,
  });

  const audit = createAuditRepository();
  const tenantRepository = createTenantRepository();
  const deviceRepository = createDeviceRepository();
  const registry = {
    tenants: createTenantService({
      pool,
      tenants: tenantRepository,
      audit,
      changes,
      provisionTopics: topicProvisioner.ensureTenant,
      clock,
    }),
    devices: createDeviceService({ pool, devices: deviceRepository, tenants: tenantRepository, audit, changes, clock }),
    credentials: createCredentialService({
      pool,
      devices: deviceRepository,
      credentials: createCredentialRepository(),
      audit,
      hasher,
      changes,
      clock,
    }),
    adminTokens: createAdminTokenService({
      pool,
      tokens: createAdminTokenRepository(),
      tenants: tenantRepository,
      audit,
      rootToken: config.admin.rootToken,
      clock,
    }),
    audit,
  };

  const devices = createDeviceDirectory({ pool, changes, clock });
  const sessions = createSessionStore(redis);

  const authMetrics = createAuthMetrics(metrics);
  const verification = createVerificationRepository(pool);
  const authn = createAuthnService({
    devices,
    cache: createCredentialCache({ ...redis, secret: settings.cacheSecret, clock, ttlMs: settings.cacheTtlS * 1000 }),
    repository: verification,
    hasher,
    hashQueue: createBoundedQueue({
      // One core is left to the event loop: argon2 on every core starves the
      // requests that are only cache hits or refusals.
      concurrency: settings.hashConcurrency || Math.max(1, availableParallelism() - 1),
      maxWaitMs: settings.hashMaxWaitMs,
    }),
    throttle: createAuthThrottle(redis),
    usage: createKeyUsageRecorder({ repository: verification, clock, log }),
    duplicates: createDuplicateClientGuard({ policy: settings.duplicateClientPolicy, sessions, emqx: infra.emqx, clock, log }),
    kicker: createSessionKicker({ ...redis, emqx: infra.emqx, metrics: authMetrics, log }),
    changes,
    metrics: authMetrics,
    clock,
    log,
    hashBudgetMs: settings.hashMaxWaitMs,
  });
  const authz = createAuthzService({ devices, metrics: authMetrics });

  const deviceEvents = createDeviceEventProducer({ produce: infra.kafka.produce, topics });
  const liveness = createLivenessService({
    store: createLivenessStore(infra.redis.redis, infra.redis.keyPrefix),
    events: deviceEvents,
    pool,
    statuses: createLivenessRepository(),
    devices,
    changes,
    clock,
    metrics: createLivenessMetrics(metrics),
    log,
    options: { flushIntervalMs: config.liveness.flushIntervalMs },
  });
  const livenessSweeper = createLivenessSweeper({
    liveness,
    intervalMs: config.liveness.sweepIntervalMs,
    persistIntervalMs: 10_000,
    log,
  });
  const deviceStatuses = createDeviceStatusService({
    pool,
    devices: deviceRepository,
    liveness,
    sessions: sessionLookup(sessions),
    log,
  });

  const telemetryMetrics = createTelemetryMetrics(metrics);
  const dedup = createMessageDedup({
    redis: infra.redis.redis,
    keyPrefix: infra.redis.keyPrefix,
    windowS: config.ingest.dedupWindowS,
    timeoutMs: 250,
    clock,
    onError: (error) => {
      telemetryMetrics.dedupUnavailable.inc();
      infra.redis.state.down(error, { operation: 'dedup' });
    },
  });
  const telemetry = createTelemetryIngest({
    devices,
    topics,
    clock,
    provisioner: topicProvisioner,
    limits: config.ingest.limits,
    metrics: telemetryMetrics,
    dedup,
    batcher: createProduceBatcher({
      produce: (topicMessages, timeoutMs) => infra.kafka.produce(topicMessages, timeoutMs),
      lingerMs: config.ingest.lingerMs,
      maxBatchSize: config.ingest.batchMax,
      maxInFlightBatches: config.ingest.maxInFlightBatches,
      maxPending: config.ingest.maxPending,
      timeoutMs: config.ingest.produceTimeoutMs,
      screen: (keys) => dedup.delivered(keys),
      observer: telemetryMetrics.observer,
    }),
    onAccepted: (device, receivedAtMs) => void liveness.recordTelemetry(device, receivedAtMs),
  });

  const eventHandlers: Record<string, EventHandler> = {
    'message.publish': telemetry.handle,
    ...createSessionEventHandlers({ sessions, devices, deviceEvents, log }),
  };
  // Telemetry accepted before the server closed still reaches liveness.
  const close = () => Promise.all([authn.close(), liveness.flush()]).then(() => undefined);
  return {
    topics,
    topicProvisioner,
    topicReconciliation,
    changes,
    hasher,
    devices,
    registry,
    sessions,
    authn,
    authz,
    deviceEvents,
    liveness,
    livenessSweeper,
    deviceStatuses,
    eventHandlers,
    close,
  };
}

export type Services = ReturnType<typeof createServices>;
