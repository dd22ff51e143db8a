import type { FastifyBaseLogger } from 'fastify';
import type { Registry } from 'prom-client';
import type { Config } from './config.js';
import { createCredentialChangeBus } from './infra/credential-changes.js';
import type { Infra } from './infra/index.js';
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
import { noRecordedSessions } from './modules/liveness/session-lookup.js';
import { createTenantRepository } from './modules/tenants/tenant-repository.js';
import { createTenantService } from './modules/tenants/tenant-service.js';

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
  const hasher = createPasswordHasher(config.credentials.argon2);
  const provisionTopics = (tenantId: string) =>
    infra.kafka.ensureTopics(topics.forTenant(tenantId), {
      partitions: config.kafka.topicPartitions,
      replicationFactor: config.kafka.topicReplicationFactor,
    });

  const audit = createAuditRepository();
  const tenantRepository = createTenantRepository();
  const deviceRepository = createDeviceRepository();
  const registry = {
    tenants: createTenantService({ pool, tenants: tenantRepository, audit, changes, provisionTopics, clock }),
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
    sessions: noRecordedSessions,
    log,
  });
  const eventHandlers: Record<string, EventHandler> = {};
  return { topics, changes, hasher, devices, registry, eventHandlers, deviceEvents, liveness, livenessSweeper, deviceStatuses };
}

export type Services = ReturnType<typeof createServices>;
