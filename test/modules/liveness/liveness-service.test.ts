import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import type { LivenessService } from '../../../src/modules/liveness/liveness-service.js';
import { wireLiveness } from '../../../src/wiring/liveness.js';
import { wireSessions } from '../../../src/wiring/sessions.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { consumeRecords } from '../../helpers/kafka.js';

interface DeviceEventRecord {
  type: string;
  tenant_id: string;
  device_id: string;
  at: string;
  reason?: string;
}

const T0 = Date.parse('2026-11-24T12:00:00.000Z');

describe('liveness from telemetry', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let admin: AdminClient;
  /** Driven directly, wired as the app wires it, on the app's stores. */
  let liveness: LivenessService;
  /** The registry the driven liveness service counts in. */
  let metrics: Registry;
  let now = T0;
  let tenantCount = 0;

  before(async () => {
    // Each awaited message is written at the end of its turn, so these tests
    // step the injected clock message by message without waiting for a flush interval.
    ctx = await createTestContext({ LIVENESS_FLUSH_INTERVAL_MS: '0' });
    app = await ctx.app({ clock: () => now });
    admin = adminClient(app);
    const wiring = ctx.wiring({ clock: () => now });
    liveness = wireLiveness({ ...wiring, sessions: wireSessions(wiring).store }).service;
    metrics = wiring.metrics;
  });
  after(() => ctx.close());

  /** A tenant of its own (so its event topic holds only this test's records) with one device. */
  async function deviceWithThreshold(thresholdS: number) {
    const tenantId = `live${++tenantCount}`;
    assert.equal((await admin.post('/v1/tenants', { id: tenantId, name: tenantId })).statusCode, 201);
    const created = await admin.post(`/v1/tenants/${tenantId}/devices`, { id: randomUUID(), name: 'sensor', offline_threshold_s: thresholdS });
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json().id as string;
    return { id, tenantId, offlineThresholdS: thresholdS, topic: `${ctx.config.kafka.topicPrefix}device.events.${tenantId}` };
  }

  /** Every event of the topic, reading on a while after `count` arrived so extra ones show up. */
  async function events(topic: string, count: number): Promise<DeviceEventRecord[]> {
    const records = await consumeRecords([topic], count, { settleMs: 1500 });
    return records.map((record) => {
      const event = JSON.parse(record.value ?? 'null') as DeviceEventRecord;
      assert.equal(record.key, event.device_id, 'keyed by device id');
      return event;
    });
  }

  const online = async (deviceId: string) => (await liveness.read(deviceId))?.online ?? false;

  it('the first telemetry message makes the device online and emits one online event', async () => {
    now = T0;
    const device = await deviceWithThreshold(20);
    assert.equal(await online(device.id), false);
    await liveness.recordTelemetry(device, now);
    await liveness.recordTelemetry(device, now + 3000);
    assert.equal(await online(device.id), true);
    assert.deepEqual(await events(device.topic, 1), [
      { type: 'online', tenant_id: device.tenantId, device_id: device.id, at: new Date(T0).toISOString() },
    ]);
  });

  it('silence past the threshold makes it offline: never early, at most 5 s late', async () => {
    now = T0;
    const device = await deviceWithThreshold(20);
    await liveness.recordTelemetry(device, now);
    now = T0 + 20_000 - 1;
    await liveness.sweep();
    assert.equal(await online(device.id), true, 'not offline before the threshold passed');
    now = T0 + 20_000 + 5000;
    await liveness.sweep();
    assert.equal(await online(device.id), false);
    const received = await events(device.topic, 2);
    assert.deepEqual(
      received.map((event) => [event.type, event.at]),
      [
        ['online', new Date(T0).toISOString()],
        ['offline', new Date(T0 + 20_000).toISOString()],
      ],
    );
  });

  it('a heartbeat every threshold/2 keeps it online without flapping; a chatty device goes offline on time', async () => {
    now = T0;
    const device = await deviceWithThreshold(20);
    for (let beat = 0; beat < 12; beat++) {
      await liveness.recordTelemetry(device, now);
      now += 10_000;
      await liveness.sweep();
      assert.equal(await online(device.id), true, `online after beat ${beat}`);
    }
    // Then a message every 100 ms: most of them skip the write, which must not make offline early.
    const chattyStart = now;
    for (now = chattyStart; now <= chattyStart + 5000; now += 100) await liveness.recordTelemetry(device, now);
    const last = now - 100;
    now = last + 20_000 - 1;
    await liveness.sweep();
    assert.equal(await online(device.id), true, 'the last message counts even when its write was skipped');
    now = last + 20_000 + 5000;
    await liveness.sweep();
    assert.equal(await online(device.id), false);
    const received = await events(device.topic, 2);
    assert.deepEqual(
      received.map((event) => event.type),
      ['online', 'offline'],
    );
    const offlineAt = Date.parse(received[1]?.at ?? '');
    assert.ok(offlineAt >= last + 20_000 - 1000 && offlineAt <= last + 20_000, `offline at ${received[1]?.at}`);
  });

  it('a late message whose own deadline already passed does not make the device online', async () => {
    now = T0 + 60_000;
    const device = await deviceWithThreshold(20);
    await liveness.recordTelemetry(device, T0);
    assert.equal(await online(device.id), false);
    assert.equal(await liveness.read(device.id), null);
  });

  async function waitForThreshold(deviceId: string, thresholdS: number) {
    for (let waited = 0; waited < 3000; waited += 20) {
      if ((await liveness.read(deviceId))?.thresholdMs === thresholdS * 1000) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.fail(`threshold ${thresholdS} s was not applied`);
  }

  it('lowering the threshold through the registry API takes effect at once', async () => {
    now = T0;
    const device = await deviceWithThreshold(120);
    await liveness.recordTelemetry(device, now);
    now = T0 + 30_000;
    await liveness.sweep();
    assert.equal(await online(device.id), true);
    assert.equal((await admin.patch(`/v1/devices/${device.id}`, { offline_threshold_s: 20 })).statusCode, 200);
    await waitForThreshold(device.id, 20);
    await liveness.sweep();
    assert.equal(await online(device.id), false);
    const received = await events(device.topic, 2);
    assert.deepEqual(
      received.map((event) => [event.type, event.at]),
      [
        ['online', new Date(T0).toISOString()],
        ['offline', new Date(T0 + 20_000).toISOString()],
      ],
    );
  });

  it('raising the threshold extends the current deadline at once', async () => {
    now = T0;
    const device = await deviceWithThreshold(20);
    await liveness.recordTelemetry(device, now);
    now = T0 + 10_000;
    assert.equal((await admin.patch(`/v1/devices/${device.id}`, { offline_threshold_s: 600 })).statusCode, 200);
    await waitForThreshold(device.id, 600);
    now = T0 + 60_000;
    await liveness.sweep();
    assert.equal(await online(device.id), true, 'still online 60 s after its last message');
    now = T0 + 600_000 + 5000;
    await liveness.sweep();
    assert.equal(await online(device.id), false);
  });

  it('forgets a deleted device', async () => {
    now = T0;
    const device = await deviceWithThreshold(20);
    await liveness.recordTelemetry(device, now);
    assert.equal((await admin.delete(`/v1/devices/${device.id}`)).statusCode, 204);
    for (let waited = 0; waited < 3000 && (await liveness.read(device.id)) !== null; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(await liveness.read(device.id), null);
  });

  it('counts transitions and sweeps, and the app shows its own in /metrics', async () => {
    const text = await metrics.metrics();
    assert.match(text, /devicelink_device_liveness_transitions_total\{type="online"\} [1-9]/);
    assert.match(text, /devicelink_device_liveness_transitions_total\{type="offline"\} [1-9]/);
    assert.match(text, /devicelink_device_liveness_sweep_duration_seconds_count [1-9]/);
    // The app's background sweeper has run on its own meanwhile.
    const exposed = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(exposed, /^devicelink_device_liveness_sweep_duration_seconds_count [1-9]/m);
  });
});
