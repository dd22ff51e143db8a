import { Counter, Histogram, type Registry } from 'prom-client';
import type { TransitionType } from './liveness-store.js';

export interface LivenessMetrics {
  /** A transition whose event Kafka acknowledged. */
  transitionEmitted(type: TransitionType): void;
  produceFailed(count: number): void;
  sweepFinished(durationS: number, claimed: number): void;
  /** A flush whose liveness updates for `devices` devices failed. */
  updateFailed(devices: number): void;
}

export function createLivenessMetrics(registry: Registry): LivenessMetrics {
  const transitions = new Counter({
    name: 'devicelink_device_liveness_transitions_total',
    help: 'online/offline events produced to Kafka, by type',
    labelNames: ['type'] as const,
    registers: [registry],
  });
  const produceFailures = new Counter({
    name: 'devicelink_device_liveness_event_produce_failures_total',
    help: 'online/offline events whose produce failed and were queued for a retry',
    registers: [registry],
  });
  const sweepDuration = new Histogram({
    name: 'devicelink_device_liveness_sweep_duration_seconds',
    help: 'Time of one deadline sweep on this replica, Kafka produce included',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const sweepClaimed = new Histogram({
    name: 'devicelink_device_liveness_sweep_claimed_devices',
    help: 'Devices this replica took offline (or whose event it retried) in one sweep',
    buckets: [0, 1, 10, 100, 1000, 10_000],
    registers: [registry],
  });
  const updateFailures = new Counter({
    name: 'devicelink_device_liveness_update_failures_total',
    help: 'Liveness updates from telemetry that failed (Redis unavailable), counted per device and flush',
    registers: [registry],
  });
  return {
    transitionEmitted: (type) => transitions.inc({ type }),
    produceFailed: (count) => produceFailures.inc(count),
    sweepFinished(durationS, claimed) {
      sweepDuration.observe(durationS);
      sweepClaimed.observe(claimed);
    },
    updateFailed: (devices) => updateFailures.inc(devices),
  };
}
