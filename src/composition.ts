import type { FastifyBaseLogger } from 'fastify';
import type { Registry } from 'prom-client';
import type { Config } from './config.js';
import { createCredentialChangeBus } from './infra/credential-changes.js';
import type { Infra } from './infra/index.js';
import type { Clock } from './lib/clock.js';
import { createTopicNames } from './lib/topics.js';
import { createDeviceDirectory } from './modules/devices/device-directory.js';
import type { EventHandler } from './modules/emqx-events/events-routes.js';
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
  const topics = createTopicNames(config.kafka.topicPrefix);
  const changes = createCredentialChangeBus(infra.redis, log);
  const devices = createDeviceDirectory({ pool: infra.postgres.pool, changes, clock });
  const eventHandlers: Record<string, EventHandler> = {};

  const topicProvisioner = createTopicProvisioner({
    kafka: infra.kafka,
    topics,
    partitions: config.kafka.topicPartitions,
    replicationFactor: config.kafka.topicReplicationFactor,
  });
  const topicReconciliation = createTopicReconciliation({
    provisioner: topicProvisioner,
    listTenantIds: createTenantIdRepository(infra.postgres.pool).listTenantIds,
    log,
  });

  const telemetryMetrics = createTelemetryMetrics(metrics);
  const telemetry = createTelemetryIngest({
    devices,
    topics,
    clock,
    provisioner: topicProvisioner,
    limits: config.ingest.limits,
    metrics: telemetryMetrics,
    dedup: createMessageDedup({
      redis: infra.redis.redis,
      keyPrefix: infra.redis.keyPrefix,
      windowS: config.ingest.dedupWindowS,
      timeoutMs: 250,
      onError: (error) => {
        telemetryMetrics.dedupUnavailable.inc();
        infra.redis.state.down(error, { operation: 'dedup' });
      },
    }),
    batcher: createProduceBatcher({
      produce: (topicMessages, timeoutMs) => infra.kafka.produce(topicMessages, timeoutMs),
      lingerMs: config.ingest.lingerMs,
      maxBatchSize: config.ingest.batchMax,
      maxInFlightBatches: config.ingest.maxInFlightBatches,
      maxPending: config.ingest.maxPending,
      timeoutMs: config.ingest.produceTimeoutMs,
      observer: telemetryMetrics.observer,
    }),
  });
  eventHandlers['message.publish'] = telemetry.handle;

  return { topics, changes, devices, eventHandlers, topicProvisioner, topicReconciliation };
}

export type Services = ReturnType<typeof createServices>;
