import { Counter, Histogram, type Registry } from 'prom-client';
import type { BatchObserver } from './produce-batcher.js';

export function createTelemetryMetrics(registry: Registry) {
  const registers = [registry];
  const batchSize = new Histogram({
    name: 'devicelink_telemetry_produce_batch_records',
    help: 'Records per Kafka produce request (micro-batching)',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
    registers,
  });
  const produceDuration = new Histogram({
    name: 'devicelink_telemetry_produce_duration_seconds',
    help: 'Time from sending a batch to Kafka until every in-sync replica acknowledged it (or it failed), by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const observer: BatchObserver = {
    batch(size, seconds, ok) {
      batchSize.observe(size);
      produceDuration.observe({ outcome: ok ? 'acked' : 'failed' }, seconds);
    },
  };
  return {
    observer,
    accepted: new Counter({
      name: 'devicelink_telemetry_accepted_total',
      help: 'Telemetry messages produced to telemetry.raw and acknowledged',
      registers,
    }),
    deadLettered: new Counter({
      name: 'devicelink_telemetry_dead_lettered_total',
      help: 'Telemetry messages produced to a dead-letter topic, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    deduplicated: new Counter({
      name: 'devicelink_telemetry_deduplicated_total',
      help: 'Repeated deliveries of an already produced message, answered 2xx without producing again',
      registers,
    }),
    retried: new Counter({
      name: 'devicelink_telemetry_unavailable_total',
      help: 'Telemetry messages answered 503 (EMQX retries them), or retried in place when read by the subscription, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    dedupUnavailable: new Counter({
      name: 'devicelink_telemetry_dedup_unavailable_total',
      help: 'Dedup-window lookups or writes that failed (Redis down or slow); the message was produced anyway',
      registers,
    }),
  };
}

export type TelemetryMetrics = ReturnType<typeof createTelemetryMetrics>;
