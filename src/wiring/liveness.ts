import { createTopicNames } from '../lib/topics.js';
import { createDeviceEventProducer } from '../modules/device-events/device-event-producer.js';
import type { DeviceDirectory } from '../modules/devices/device-directory.js';
import { createDeviceRepository } from '../modules/devices/device-repository.js';
import { createDeviceStatusService } from '../modules/liveness/device-status-service.js';
import { createLivenessMetrics } from '../modules/liveness/liveness-metrics.js';
import { createLivenessRepository } from '../modules/liveness/liveness-repository.js';
import { createLivenessService } from '../modules/liveness/liveness-service.js';
import { createLivenessStore } from '../modules/liveness/liveness-store.js';
import { createLivenessSweeper } from '../modules/liveness/liveness-sweeper.js';
import { sessionLookup } from '../modules/liveness/session-lookup.js';
import type { SessionStore } from '../modules/sessions/session-store.js';
import type { WiringContext } from './context.js';

/**
 * Online/offline from telemetry: deadlines in Redis, a sweep on every
 * replica, transitions on device.events.{tenant}; and the status endpoint,
 * which shows them beside the MQTT session.
 */
export function wireLiveness(deps: WiringContext & { directory: DeviceDirectory; sessions: SessionStore }) {
  const { config, infra, clock, log, lifecycle } = deps;
  const pool = infra.postgres.pool;
  const service = createLivenessService({
    store: createLivenessStore(infra.redis.redis, infra.redis.keyPrefix),
    events: createDeviceEventProducer({ produce: infra.kafka.produce, topics: createTopicNames(config.kafka.topicPrefix) }),
    pool,
    statuses: createLivenessRepository(),
    devices: deps.directory,
    clock,
    metrics: createLivenessMetrics(deps.metrics),
    log,
    options: { flushIntervalMs: config.liveness.flushIntervalMs },
  });
  const sweeper = createLivenessSweeper({ liveness: service, intervalMs: config.liveness.sweepIntervalMs, log });
  lifecycle.onReady(() => sweeper.start());
  lifecycle.preClose(() => sweeper.stop());
  // The liveness of the telemetry the last requests brought.
  lifecycle.onClose(() => service.flush());
  return {
    service,
    statuses: createDeviceStatusService({ pool, devices: createDeviceRepository(), liveness: service, sessions: sessionLookup(deps.sessions), log }),
  };
}
