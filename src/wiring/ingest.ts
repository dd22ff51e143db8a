import type { DeviceDirectory } from '../modules/devices/device-directory.js';
import type { DeviceRecord } from '../modules/devices/device-repository.js';
import { createMessageDedup } from '../modules/telemetry/message-dedup.js';
import { createProduceBatcher } from '../modules/telemetry/produce-batcher.js';
import { createTelemetryIngest } from '../modules/telemetry/telemetry-ingest.js';
import { createTelemetryMetrics } from '../modules/telemetry/telemetry-metrics.js';
import type { WiringContext } from './context.js';
import type { Topics } from './topics.js';

/**
 * Telemetry from EMQX's rule engine into Kafka: normalized TelemetryPoints on
 * telemetry.raw.{tenant}, everything else on a dead-letter topic, repeats
 * kept out by the message-id window.
 */
export function wireIngest(
  deps: WiringContext & {
    directory: DeviceDirectory;
    topics: Topics;
    /** Told of every message Kafka acknowledged; must not throw. */
    onAccepted: (device: DeviceRecord, receivedAtMs: number) => void;
  },
) {
  const { config, infra, clock, directory, topics } = deps;
  const settings = config.ingest;
  const metrics = createTelemetryMetrics(deps.metrics);
  const dedup = createMessageDedup({
    redis: infra.redis.redis,
    keyPrefix: infra.redis.keyPrefix,
    windowS: settings.dedupWindowS,
    clock,
    onError: (error) => {
      metrics.dedupUnavailable.inc();
      infra.redis.state.down(error, { operation: 'dedup' });
    },
  });
  const batcher = createProduceBatcher({
    produce: (topicMessages, timeoutMs) => infra.kafka.produce(topicMessages, timeoutMs),
    lingerMs: settings.lingerMs,
    maxBatchSize: settings.batchMax,
    maxBatchBytes: config.kafka.maxBatchBytes,
    maxInFlightBatches: settings.maxInFlightBatches,
    maxPending: settings.maxPending,
    maxPendingBytes: settings.maxPendingBytes,
    timeoutMs: settings.produceTimeoutMs,
    screen: (keys) => dedup.delivered(keys),
    observer: metrics.observer,
  });
  const telemetry = createTelemetryIngest({
    devices: directory,
    topics: topics.names,
    clock,
    provisioner: topics.provisioner,
    limits: settings.limits,
    metrics,
    dedup,
    batcher,
    onAccepted: deps.onAccepted,
  });
  return { handlers: { 'message.publish': telemetry.handle }, unusable: telemetry.unusable };
}
