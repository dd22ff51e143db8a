import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import type { RedisConnection } from '../../../src/infra/redis.js';
import type { DeviceEvent, DeviceEventProducer } from '../../../src/modules/device-events/device-event-producer.js';
import { DeviceEventProduceError } from '../../../src/modules/device-events/device-event-producer.js';
import type { DeviceRecord } from '../../../src/modules/devices/device-repository.js';
import { createLivenessMetrics } from '../../../src/modules/liveness/liveness-metrics.js';
import type { StoredStatus } from '../../../src/modules/liveness/liveness-repository.js';
import { createLivenessService, type LivenessOptions } from '../../../src/modules/liveness/liveness-service.js';
import { createLivenessStore, type LivenessStore, type TouchInput } from '../../../src/modules/liveness/liveness-store.js';
import { useTestRedis } from '../../helpers/redis.js';

const T0 = Date.parse('2026-11-24T12:00:00.000Z');
const silent = { warn: () => undefined, debug: () => undefined };

/** A producer that fails for the tenants in `down` and records what it acknowledged. */
function fakeProducer() {
  const produced: DeviceEvent[] = [];
  const down = new Set<string>();
  const producer: DeviceEventProducer = {
    async produce(events) {
      const failed = new Set(events.filter((event) => down.has(event.tenant_id)).map((event) => event.tenant_id));
      produced.push(...events.filter((event) => !failed.has(event.tenant_id)));
      if (failed.size > 0) throw new DeviceEventProduceError(failed, new Error('broker unreachable'));
    },
  };
  return { producer, produced, down };
}

describe('liveness outbox', () => {
  const test = useTestRedis();
  const { prefix } = test;
  let redis: RedisConnection;
  before(() => {
    redis = test.redis;
  });

  function setup(devices: Map<string, DeviceRecord>, options: Partial<LivenessOptions> = {}, store = createLivenessStore(redis, prefix)) {
    let now = T0;
    const kafka = fakeProducer();
    const saved: StoredStatus[] = [];
    const liveness = createLivenessService({
      store,
      events: kafka.producer,
      pool: { query: () => Promise.reject(new Error('not used')) },
      statuses: { saveStatuses: async (_db, statuses) => void saved.push(...statuses) },
      devices: { get: async (id) => devices.get(id) ?? null },
      clock: () => now,
      metrics: createLivenessMetrics(new Registry()),
      log: silent,
      options,
    });
    return { liveness, kafka, saved, setNow: (ms: number) => (now = ms) };
  }

  it('retries an event whose produce failed until Kafka takes it: none lost, none doubled', async () => {
    const device: DeviceRecord = { id: randomUUID(), tenantId: 'acme', disabled: false, offlineThresholdS: 10, decoder: null, credentialVersion: '1' };
    const { liveness, kafka, saved, setNow } = setup(new Map([[device.id, device]]));
    kafka.down.add('acme');
    await liveness.recordTelemetry(device, T0);
    assert.equal(kafka.produced.length, 0, 'the online event could not be produced');
    assert.equal((await liveness.read(device.id))?.online, true, 'the transition itself stands');

    setNow(T0 + 500);
    assert.deepEqual(await liveness.sweep(), { expired: 0, retried: 0 }, 'retried only after the retry delay');
    setNow(T0 + 1500);
    assert.deepEqual(await liveness.sweep(), { expired: 0, retried: 1 }, 'still failing: queued again');
    kafka.down.clear();
    setNow(T0 + 3000);
    assert.deepEqual(await liveness.sweep(), { expired: 0, retried: 1 });
    setNow(T0 + 60_000);
    assert.deepEqual(await liveness.sweep(), { expired: 1, retried: 0 });
    setNow(T0 + 120_000);
    assert.deepEqual(await liveness.sweep(), { expired: 0, retried: 0 }, 'nothing left once produced');
    assert.deepEqual(
      kafka.produced.map((event) => [event.type, event.at]),
      [
        ['online', new Date(T0).toISOString()],
        ['offline', new Date(T0 + 10_000).toISOString()],
      ],
    );
    assert.deepEqual(
      saved.map((status) => [status.online, status.changedAt.getTime()]),
      [
        [true, T0],
        [false, T0 + 10_000],
      ],
    );
  });

  it('a tenant whose produce fails does not hold back the others', async () => {
    const healthy: DeviceRecord = { id: randomUUID(), tenantId: 'ok', disabled: false, offlineThresholdS: 10, decoder: null, credentialVersion: '1' };
    const broken: DeviceRecord = { id: randomUUID(), tenantId: 'broken', disabled: false, offlineThresholdS: 10, decoder: null, credentialVersion: '1' };
    const { liveness, kafka, setNow } = setup(new Map([healthy, broken].map((d) => [d.id, d])));
    await liveness.recordTelemetry(healthy, T0);
    await liveness.recordTelemetry(broken, T0);
    kafka.down.add('broken');
    setNow(T0 + 20_000);
    assert.deepEqual(await liveness.sweep(), { expired: 2, retried: 0 });
    assert.deepEqual(
      kafka.produced.map((event) => [event.device_id, event.type]),
      [
        [healthy.id, 'online'],
        [broken.id, 'online'],
        [healthy.id, 'offline'],
      ],
    );
  });

  it('drops an event that cannot be produced once its device is deleted', async () => {
    const device: DeviceRecord = { id: randomUUID(), tenantId: 'gone', disabled: false, offlineThresholdS: 10, decoder: null, credentialVersion: '1' };
    const devices = new Map([[device.id, device]]);
    const { liveness, kafka, setNow } = setup(devices);
    kafka.down.add('gone');
    await liveness.recordTelemetry(device, T0);
    devices.delete(device.id);
    setNow(T0 + 2000);
    assert.deepEqual(await liveness.sweep(), { expired: 0, retried: 1 });
    setNow(T0 + 4000);
    assert.deepEqual(await liveness.sweep(), { expired: 0, retried: 0 }, 'not retried forever');
  });

  /** The store, with every touchMany call's inputs kept. */
  function countingStore(keyPrefix: string) {
    const store = createLivenessStore(redis, keyPrefix);
    const calls: TouchInput[][] = [];
    const counting: LivenessStore = {
      ...store,
      touchMany(inputs, context) {
        calls.push([...inputs]);
        return store.touchMany(inputs, context);
      },
    };
    return { store: counting, calls };
  }

  const sensor = (tenantId = 'acme'): DeviceRecord => ({ id: randomUUID(), tenantId, disabled: false, offlineThresholdS: 10, decoder: null, credentialVersion: '1' });

  it('gathers the messages of a flush interval into one write per device: online as of the first, deadline from the last', async () => {
    const device = sensor();
    const { store, calls } = countingStore(`${prefix}gather:`);
    const { liveness, kafka, setNow } = setup(new Map([[device.id, device]]), { flushIntervalMs: 50 }, store);
    setNow(T0 + 300);
    // Arrival times out of order, as a batch acknowledged together may hold them.
    const recorded = [T0 + 100, T0, T0 + 250, T0 + 50].map((atMs) => liveness.recordTelemetry(device, atMs));
    assert.equal(calls.length, 0, 'nothing written before the interval ends');
    await Promise.all(recorded);
    assert.deepEqual(
      calls.map((inputs) => inputs.map((input) => [input.deviceId, input.firstAtMs, input.lastAtMs])),
      [[[device.id, T0, T0 + 250]]],
    );
    assert.deepEqual(
      kafka.produced.map((event) => [event.type, event.at]),
      [['online', new Date(T0).toISOString()]],
    );
    const state = await liveness.read(device.id);
    assert.equal(state?.seenMs, T0 + 250);
    assert.equal(state?.changedAtMs, T0);

    setNow(T0 + 5000);
    await liveness.recordTelemetry(device, T0 + 4900);
    assert.equal((await liveness.read(device.id))?.seenMs, T0 + 4900, 'the next flush moves the deadline');
    assert.equal(kafka.produced.length, 1, 'and emits nothing more');
  });

  it('a touch whose first message is past its own deadline makes the device online as of the last', async () => {
    const store = createLivenessStore(redis, `${prefix}late:`);
    const result = await store.touch(
      { deviceId: 'd', tenantId: 'acme', firstAtMs: T0 - 20_000, lastAtMs: T0 - 100, thresholdMs: 10_000, slackMs: 1000 },
      { nowMs: T0, leaseMs: 30_000 },
    );
    assert.equal(result.kind, 'online');
    assert.equal(result.kind === 'online' ? result.transition.atMs : 0, T0 - 100);
  });

  it('flushes early once a batch of devices is waiting, and at once when asked', async () => {
    const devices = [sensor(), sensor(), sensor()];
    const { store, calls } = countingStore(`${prefix}early:`);
    const { liveness } = setup(new Map(devices.map((d) => [d.id, d])), { flushIntervalMs: 60_000, touchBatch: 2 }, store);
    const first = devices.map((device) => liveness.recordTelemetry(device, T0));
    await Promise.race([first[0], first[1]]);
    assert.deepEqual(calls.map((inputs) => inputs.length), [2], 'two devices fill a batch');
    await liveness.flush();
    await Promise.all(first);
    assert.deepEqual(calls.map((inputs) => inputs.length), [2, 1]);
    assert.equal((await liveness.read(devices[2]?.id ?? ''))?.online, true);
  });

  it('a failed update is counted and never fails the telemetry', async () => {
    const device = sensor();
    const broken: LivenessStore = { ...createLivenessStore(redis, `${prefix}broken:`), touchMany: () => Promise.reject(new Error('redis down')) };
    const registry = new Registry();
    const liveness = createLivenessService({
      store: broken,
      events: fakeProducer().producer,
      pool: { query: () => Promise.reject(new Error('not used')) },
      statuses: { saveStatuses: async () => undefined },
      devices: { get: async () => device },
      clock: () => T0,
      metrics: createLivenessMetrics(registry),
      log: silent,
      options: { flushIntervalMs: 0 },
    });
    await liveness.recordTelemetry(device, T0);
    assert.match(await registry.metrics(), /devicelink_device_liveness_update_failures_total 1/);
  });

  it('touches many messages in one call exactly as one call each would', async () => {
    const many = createLivenessStore(redis, `${prefix}many:`);
    const single = createLivenessStore(redis, `${prefix}single:`);
    const context = { nowMs: T0 + 2000, leaseMs: 30_000 };
    const at = (deviceId: string, offsetMs: number) => ({
      deviceId,
      tenantId: 'acme',
      firstAtMs: T0 + offsetMs,
      lastAtMs: T0 + offsetMs,
      thresholdMs: 10_000,
      slackMs: 1000,
    });
    // A device's first message, a repeat within the slack, one past it, another
    // device, and a message too old to count.
    const inputs = [at('a', 0), at('a', 500), at('a', 1500), at('b', 100), at('c', -20_000)];
    const batched = await many.touchMany(inputs, context);
    const oneByOne = [];
    for (const input of inputs) oneByOne.push(await single.touch(input, context));
    assert.deepEqual(
      batched.map((r) => r.kind),
      ['online', 'skipped', 'extended', 'online', 'skipped'],
    );
    assert.deepEqual(batched, oneByOne);
    assert.deepEqual(await many.read('a'), await single.read('a'));
    assert.equal((await many.read('a'))?.seenMs, T0 + 1500);
    assert.equal(await many.read('c'), null);
    assert.deepEqual(await many.touchMany([], context), []);
  });

  it('claims only the devices whose deadline passed', async () => {
    const store = createLivenessStore(redis, `${prefix}cost:`);
    for (let i = 0; i < 50; i++) {
      const atMs = T0 + i * 1000;
      await store.touch({ deviceId: `d${i}`, tenantId: 'acme', firstAtMs: atMs, lastAtMs: atMs, thresholdMs: 10_000, slackMs: 0 }, { nowMs: atMs, leaseMs: 30_000 });
    }
    const { expired } = await store.claim({ nowMs: T0 + 14_500, limit: 1000, leaseMs: 30_000 });
    assert.deepEqual(
      expired.map((t) => t.deviceId),
      ['d0', 'd1', 'd2', 'd3', 'd4'],
    );
  });
});
