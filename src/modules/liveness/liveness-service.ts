import type { Queryable } from '../../infra/transaction.js';
import type { Clock } from '../../lib/clock.js';
import type { CredentialChange } from '../../lib/credential-change.js';
import { DeviceEventProduceError, type DeviceEvent, type DeviceEventProducer } from '../device-events/device-event-producer.js';
import type { DeviceDirectory } from '../devices/device-directory.js';
import type { DeviceRecord } from '../devices/device-repository.js';
import type { LivenessMetrics } from './liveness-metrics.js';
import type { LivenessRepository, StoredStatus } from './liveness-repository.js';
import type { LivenessState, LivenessStore, TouchInput, Transition } from './liveness-store.js';

export interface LivenessLogger {
  warn(object: object, message: string): void;
  debug(object: object, message: string): void;
}

export interface LivenessOptions {
  /**
   * Upper bound of the write-skipping window: an online device's deadline is
   * rewritten only when its last recorded message is at least
   * min(threshold / 10, maxSlackMs) old. The deadline carries the same slack,
   * so a device goes offline late by at most that much, never early.
   */
  maxSlackMs: number;
  /** How long a claimed transition belongs to one replica; longer than a Kafka produce may take. */
  leaseMs: number;
  /** When a transition whose produce failed is tried again. */
  retryDelayMs: number;
  /** Devices claimed per script call (bounds the time Redis spends in one script). */
  claimBatch: number;
  /** Claim (or last_seen) batches per call at most, so one call cannot run on without bound. */
  maxBatchesPerSweep: number;
  /** last_seen rows written per Postgres statement. */
  persistBatch: number;
  /**
   * How long accepted telemetry is gathered before it is written to Redis, in
   * one script call per `touchBatch` devices however many messages they sent;
   * 0 writes at the end of the event-loop turn. The device's online event and
   * deadline are late by at most this much.
   */
  flushIntervalMs: number;
  /** Devices per touch script call; a flush starts early once this many are waiting. */
  touchBatch: number;
}

export const DEFAULT_LIVENESS_OPTIONS: LivenessOptions = {
  maxSlackMs: 1000,
  leaseMs: 30_000,
  retryDelayMs: 1000,
  claimBatch: 1000,
  maxBatchesPerSweep: 20,
  persistBatch: 1000,
  flushIntervalMs: 250,
  touchBatch: 1000,
};

export interface LivenessServiceDeps {
  store: LivenessStore;
  events: DeviceEventProducer;
  pool: Queryable;
  statuses: Pick<LivenessRepository, 'saveStatuses'>;
  devices: Pick<DeviceDirectory, 'get'>;
  clock: Clock;
  metrics: LivenessMetrics;
  log: LivenessLogger;
  options?: Partial<LivenessOptions>;
}

export interface SweepResult {
  /** Devices this call took offline. */
  expired: number;
  /** Earlier transitions whose produce this call retried. */
  retried: number;
}

export interface LivenessService {
  /**
   * Records that the device's telemetry was accepted at `atMs`: with the next
   * flush, moves its deadline to `atMs + threshold`, and when it was offline
   * makes it online and produces the `online` event. The promise settles once
   * that flush is done and never rejects: a failure is counted and logged, and
   * must not fail the telemetry it belongs to (so callers need not wait).
   */
  recordTelemetry(device: Pick<DeviceRecord, 'id' | 'tenantId' | 'offlineThresholdS'>, atMs: number): Promise<void>;
  /** Writes the telemetry recorded so far now, and waits for every flush under way (at shutdown). */
  flush(): Promise<void>;
  /** Takes devices past their deadline offline (producing `offline` events) and retries failed events. */
  sweep(): Promise<SweepResult>;
  /** Writes pending last_seen values (and current status) to Postgres in batches; returns the rows written. */
  persistLastSeen(): Promise<number>;
  /** The live state, or null when the device never sent telemetry (or Redis lost it). */
  read(deviceId: string): Promise<LivenessState | null>;
  /**
   * Applies a registry change to the device's liveness: a new threshold moves
   * its deadline, a deleted device is forgotten. Reads the device through the
   * directory, which must already have dropped it.
   */
  applyChange(change: Pick<CredentialChange, 'kind' | 'device_id'>): Promise<void>;
}

export function toDeviceEvent(transition: Transition): DeviceEvent {
  return {
    type: transition.type,
    tenant_id: transition.tenantId,
    device_id: transition.deviceId,
    at: new Date(transition.atMs).toISOString(),
  };
}

/** One status per device, the latest transition winning (an UPDATE ... FROM matches a row once). */
function latestPerDevice(statuses: readonly StoredStatus[]): StoredStatus[] {
  const byDevice = new Map<string, StoredStatus>();
  for (const status of statuses) {
    const current = byDevice.get(status.deviceId);
    if (!current || current.changedAt <= status.changedAt) byDevice.set(status.deviceId, status);
  }
  return [...byDevice.values()];
}

export function createLivenessService(deps: LivenessServiceDeps): LivenessService {
  const { store, clock, metrics, log } = deps;
  const options = { ...DEFAULT_LIVENESS_OPTIONS, ...deps.options };
  const slackFor = (thresholdMs: number) => Math.min(Math.floor(thresholdMs / 10), options.maxSlackMs);

  async function saveStatuses(statuses: StoredStatus[]) {
    if (statuses.length === 0) return;
    try {
      await deps.statuses.saveStatuses(deps.pool, latestPerDevice(statuses));
    } catch (error) {
      // Redis holds the state; the periodic write copies it to Postgres later.
      log.debug({ err: (error as Error).message, devices: statuses.length }, 'device status not written; queued');
      await store.markUnsaved(statuses.map((s) => ({ deviceId: s.deviceId, seenMs: s.lastSeenAt.getTime() })));
    }
  }

  /** A transition whose device was deleted has no one left to tell; anything else is retried. */
  async function isObsolete(transition: Transition): Promise<boolean> {
    try {
      const device = await deps.devices.get(transition.deviceId);
      return device === null || device.tenantId !== transition.tenantId;
    } catch {
      return false;
    }
  }

  /** Produces transitions, then removes them from the outbox; never rejects. */
  async function emit(transitions: readonly Transition[]): Promise<void> {
    if (transitions.length === 0) return;
    let produced: readonly Transition[] = transitions;
    let failed: Transition[] = [];
    try {
      await deps.events.produce(transitions.map(toDeviceEvent));
    } catch (error) {
      const tenants = error instanceof DeviceEventProduceError ? error.failedTenants : null;
      produced = transitions.filter((t) => tenants !== null && !tenants.has(t.tenantId));
      failed = transitions.filter((t) => tenants === null || tenants.has(t.tenantId));
      log.debug({ err: (error as Error).message, transitions: failed.length }, 'device events not produced; will retry');
    }
    try {
      const obsolete: Transition[] = [];
      const retry: Transition[] = [];
      for (const transition of failed) ((await isObsolete(transition)) ? obsolete : retry).push(transition);
      await store.ack([...produced, ...obsolete]);
      await store.release(retry, clock() + options.retryDelayMs);
      if (retry.length > 0) metrics.produceFailed(retry.length);
      for (const transition of produced) metrics.transitionEmitted(transition.type);
      await saveStatuses(
        produced.map((t) => ({
          deviceId: t.deviceId,
          online: t.type === 'online',
          changedAt: new Date(t.atMs),
          lastSeenAt: new Date(t.seenMs),
        })),
      );
    } catch (error) {
      // Unacknowledged transitions come back when their lease runs out: at worst
      // an event is produced twice, never lost.
      log.warn({ err: (error as Error).message }, 'could not settle device transitions in Redis');
    }
  }

  async function applyChange(change: Pick<CredentialChange, 'kind' | 'device_id'>): Promise<void> {
    if (change.kind === 'device_deleted') {
      await store.forget(change.device_id);
      return;
    }
    if (change.kind !== 'device_updated' && change.kind !== 'device_enabled' && change.kind !== 'device_disabled') return;
    const device = await deps.devices.get(change.device_id);
    if (!device) return;
    const thresholdMs = device.offlineThresholdS * 1000;
    await store.retime(change.device_id, thresholdMs, slackFor(thresholdMs));
  }

  // Telemetry gathered since the last flush, one entry per device however many
  // messages it sent: a device sending ten messages a second costs Redis one
  // write per flush, not ten.
  let pending = new Map<string, TouchInput>();
  let flushed: PromiseWithResolvers<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const flushing = new Set<Promise<void>>();

  async function touch(inputs: readonly TouchInput[]) {
    try {
      const results = await store.touchMany(inputs, { nowMs: clock(), leaseMs: options.leaseMs });
      await emit(results.flatMap((result) => (result.kind === 'online' ? [result.transition] : [])));
    } catch (error) {
      metrics.updateFailed(inputs.length);
      log.debug({ err: (error as Error).message, devices: inputs.length }, 'liveness update failed');
    }
  }

  function flushPending(): Promise<void> {
    clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
    timer = immediate = undefined;
    const inputs = [...pending.values()];
    const done = flushed;
    pending = new Map();
    flushed = undefined;
    const work = (inputs.length === 0 ? Promise.resolve() : touch(inputs)).then(() => done?.resolve());
    flushing.add(work);
    void work.then(() => flushing.delete(work));
    return work;
  }

  function scheduleFlush() {
    if (pending.size >= options.touchBatch) void flushPending();
    else if (options.flushIntervalMs === 0) immediate ??= setImmediate(flushPending);
    else timer ??= setTimeout(flushPending, options.flushIntervalMs);
  }

  return {
    recordTelemetry(device, atMs) {
      const entry = pending.get(device.id);
      const thresholdMs = device.offlineThresholdS * 1000;
      if (entry) {
        entry.firstAtMs = Math.min(entry.firstAtMs, atMs);
        entry.lastAtMs = Math.max(entry.lastAtMs, atMs);
        entry.tenantId = device.tenantId;
        entry.thresholdMs = thresholdMs;
        entry.slackMs = slackFor(thresholdMs);
      } else {
        pending.set(device.id, { deviceId: device.id, tenantId: device.tenantId, firstAtMs: atMs, lastAtMs: atMs, thresholdMs, slackMs: slackFor(thresholdMs) });
      }
      flushed ??= Promise.withResolvers<void>();
      const { promise } = flushed;
      scheduleFlush();
      return promise;
    },

    async flush() {
      flushPending();
      await Promise.all(flushing);
    },

    async sweep() {
      const started = performance.now();
      const result: SweepResult = { expired: 0, retried: 0 };
      for (let batch = 0; batch < options.maxBatchesPerSweep; batch++) {
        const { expired, retried } = await store.claim({ nowMs: clock(), limit: options.claimBatch, leaseMs: options.leaseMs });
        result.expired += expired.length;
        result.retried += retried.length;
        // Retried transitions are older, so they go first.
        await emit([...retried, ...expired]);
        if (expired.length < options.claimBatch && retried.length < options.claimBatch) break;
      }
      metrics.sweepFinished((performance.now() - started) / 1000, result.expired + result.retried);
      return result;
    },

    async persistLastSeen() {
      let written = 0;
      for (let batch = 0; batch < options.maxBatchesPerSweep; batch++) {
        const states = await store.takeUnsaved(options.persistBatch);
        if (states.length === 0) break;
        const statuses = states.map((s) => ({
          deviceId: s.deviceId,
          online: s.online,
          changedAt: new Date(s.changedAtMs),
          lastSeenAt: new Date(s.seenMs),
        }));
        try {
          await deps.statuses.saveStatuses(deps.pool, statuses);
        } catch (error) {
          await store.markUnsaved(states);
          throw error;
        }
        written += states.length;
        if (states.length < options.persistBatch) break;
      }
      return written;
    },

    read: (deviceId) => store.read(deviceId),
    applyChange,
  };
}
