import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import type { LivenessService } from '../../../src/modules/liveness/liveness-service.js';
import { wireLiveness } from '../../../src/wiring/liveness.js';
import { wireSessions } from '../../../src/wiring/sessions.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';

const T0 = Date.parse('2026-11-24T12:00:00.000Z');

describe('device status route and status filter', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let admin: AdminClient;
  /** Driven directly, wired as the app wires it, on the app's stores. */
  let liveness: LivenessService;
  let now = T0;
  const sensor = randomUUID();
  const idle = randomUUID();

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app({ clock: () => now });
    admin = adminClient(app);
    const wiring = ctx.wiring({ clock: () => now });
    liveness = wireLiveness({ ...wiring, sessions: wireSessions(wiring).store }).service;
    assert.equal((await admin.post('/v1/tenants', { id: 'acme', name: 'Acme' })).statusCode, 201);
    assert.equal((await admin.post('/v1/tenants', { id: 'globex', name: 'Globex' })).statusCode, 201);
    for (const id of [sensor, idle]) {
      assert.equal((await admin.post('/v1/tenants/acme/devices', { id, name: 'd', offline_threshold_s: 60 })).statusCode, 201);
    }
  });
  after(() => ctx.close());

  const listed = async (status: string) =>
    ((await admin.get(`/v1/tenants/acme/devices?status=${status}`)).json().items as { id: string }[]).map((d) => d.id).sort();

  it('shows a device that never sent telemetry as offline', async () => {
    const response = await admin.get(`/v1/devices/${sensor}/status`);
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(response.json(), {
      device_id: sensor,
      online: false,
      connected: false,
      last_seen_at: null,
      connected_at: null,
      disconnected_at: null,
      disconnect_reason: null,
      offline_threshold_s: 60,
    });
    assert.deepEqual(await listed('offline'), [sensor, idle].sort());
    assert.deepEqual(await listed('online'), []);
  });

  it('shows telemetry-driven status live, and lists by the stored status', async () => {
    await liveness.recordTelemetry({ id: sensor, tenantId: 'acme', offlineThresholdS: 60 }, now);
    const status = (await admin.get(`/v1/devices/${sensor}/status`)).json();
    assert.equal(status.online, true);
    assert.equal(status.last_seen_at, new Date(T0).toISOString());
    assert.deepEqual(await listed('online'), [sensor]);
    assert.deepEqual(await listed('offline'), [idle]);
    const device = (await admin.get(`/v1/devices/${sensor}`)).json();
    assert.equal(device.online, true);
    assert.equal(device.last_seen_at, new Date(T0).toISOString());
  });

  it('writes last_seen to Postgres in batches, not per message', async () => {
    now = T0 + 5000;
    await liveness.recordTelemetry({ id: sensor, tenantId: 'acme', offlineThresholdS: 60 }, now);
    assert.equal((await admin.get(`/v1/devices/${sensor}/status`)).json().last_seen_at, new Date(T0 + 5000).toISOString());
    // The stored copy may lag until the periodic write, which the sweeper runs every 10 s.
    await liveness.persistLastSeen();
    assert.equal((await admin.get(`/v1/devices/${sensor}`)).json().last_seen_at, new Date(T0 + 5000).toISOString());
  });

  it('flips the filter when the device goes offline', async () => {
    now = T0 + 5000 + 60_000 + 5000;
    await liveness.sweep();
    assert.equal((await admin.get(`/v1/devices/${sensor}/status`)).json().online, false);
    assert.deepEqual(await listed('online'), []);
    assert.deepEqual(await listed('offline'), [sensor, idle].sort());
  });

  it('answers 404 outside the token tenant, 400 for a bad id or status', async () => {
    const token = (await admin.post('/v1/admin-tokens', { tenant_id: 'globex' })).json().token as string;
    const scoped = adminClient(app, token);
    assert.equal((await scoped.get(`/v1/devices/${sensor}/status`)).statusCode, 404);
    assert.equal((await admin.get(`/v1/devices/${randomUUID()}/status`)).statusCode, 404);
    assert.equal((await admin.get('/v1/devices/nope/status')).statusCode, 400);
    const badStatus = await admin.get('/v1/tenants/acme/devices?status=asleep');
    assert.equal(badStatus.statusCode, 400);
    assert.match(badStatus.json().message, /^querystring\.status: /);
    assert.equal((await adminClient(app, null).get(`/v1/devices/${sensor}/status`)).statusCode, 401);
  });
});
