import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import type { CredentialChangeListener } from '../../../src/infra/credential-changes.js';
import type { DeviceEvent, DeviceEventProducer } from '../../../src/modules/device-events/device-event-producer.js';
import { DeviceEventProduceError } from '../../../src/modules/device-events/device-event-producer.js';
import type { DeviceRecord } from '../../../src/modules/devices/device-directory.js';
import { createLivenessMetrics } from '../../../src/modules/liveness/liveness-metrics.js';
import type { StoredStatus } from '../../../src/modules/liveness/liveness-repository.js';
import { createLivenessService } from '../../../src/modules/liveness/liveness-service.js';
import { createLivenessStore } from '../../../src/modules/liveness/liveness-store.js';
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
  let redis: Redis;
  before(() => {
    redis = test.redis;
  });

  function setup(devices: Map<string, DeviceRecord>) {
    let now = T0;
    const kafka = fakeProducer();
    const saved: StoredStatus[] = [];
    const listeners: CredentialChangeListener[] = [];
    const liveness = createLivenessService({
      store: createLivenessStore(redis, prefix),
      events: kafka.producer,
      pool: { query: () => Promise.reject(new Error('not used')) },
      statuses: { saveStatuses: async (_db, statuses) => void saved.push(...statuses) },
      devices: { get: async (id) => devices.get(id) ?? null, invalidate: () => undefined },
      changes: { subscribe: (listener) => (listeners.push(listener), () => undefined) },
      clock: () => now,
      metrics: createLivenessMetrics(new Registry()),
      log: silent,
    });
    return { liveness, kafka, saved, setNow: (ms: number) => (now = ms) };
  }

  it('retries an event whose produce failed until Kafka takes it: none lost, none doubled', async () => {
    const device: DeviceRecord = { id: randomUUID(), tenantId: 'acme', disabled: false, offlineThresholdS: 10, decoder: null };
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
    const healthy: DeviceRecord = { id: randomUUID(), tenantId: 'ok', disabled: false, offlineThresholdS: 10, decoder: null };
    const broken: DeviceRecord = { id: randomUUID(), tenantId: 'broken', disabled: false, offlineThresholdS: 10, decoder: null };
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
    const device: DeviceRecord = { id: randomUUID(), tenantId: 'gone', disabled: false, offlineThresholdS: 10, decoder: null };
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

  it('touches many messages in one call exactly as one call each would', async () => {
    const many = createLivenessStore(redis, `${prefix}many:`);
    const single = createLivenessStore(redis, `${prefix}single:`);
    const at = (deviceId: string, offsetMs: number) => ({
      deviceId,
      tenantId: 'acme',
      atMs: T0 + offsetMs,
      nowMs: T0 + 2000,
      thresholdMs: 10_000,
      slackMs: 1000,
      leaseMs: 30_000,
    });
    // A device's first message, a repeat within the slack, one past it, another
    // device, and a message too old to count.
    const inputs = [at('a', 0), at('a', 500), at('a', 1500), at('b', 100), at('c', -20_000)];
    const batched = await many.touchMany(inputs);
    const oneByOne = [];
    for (const input of inputs) oneByOne.push(await single.touch(input));
    assert.deepEqual(
      batched.map((r) => r.kind),
      ['online', 'skipped', 'extended', 'online', 'skipped'],
    );
    assert.deepEqual(batched, oneByOne);
    assert.deepEqual(await many.read('a'), await single.read('a'));
    assert.equal((await many.read('a'))?.seenMs, T0 + 1500);
    assert.equal(await many.read('c'), null);
    assert.deepEqual(await many.touchMany([]), []);
  });

  it('claims only the devices whose deadline passed', async () => {
    const store = createLivenessStore(redis, `${prefix}cost:`);
    for (let i = 0; i < 50; i++) {
      await store.touch({ deviceId: `d${i}`, tenantId: 'acme', atMs: T0 + i * 1000, nowMs: T0 + i * 1000, thresholdMs: 10_000, slackMs: 0, leaseMs: 30_000 });
    }
    const { expired } = await store.claim({ nowMs: T0 + 14_500, limit: 1000, leaseMs: 30_000 });
    assert.deepEqual(
      expired.map((t) => t.deviceId),
      ['d0', 'd1', 'd2', 'd3', 'd4'],
    );
  });
});
