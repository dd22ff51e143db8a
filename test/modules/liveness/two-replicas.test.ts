import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { adminClient } from '../../helpers/admin.js';
import { wireLiveness } from '../../../src/wiring/liveness.js';
import { wireSessions } from '../../../src/wiring/sessions.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { consumeRecords } from '../../helpers/kafka.js';

const T0 = Date.parse('2026-11-24T12:00:00.000Z');
const DEVICES = 1000;

describe('liveness sweep on two replicas', () => {
  let ctx: TestContext;

  before(async () => {
    ctx = await createTestContext();
  });
  after(() => ctx.close());

  it('emits exactly one offline event per silent device however many replicas sweep', async () => {
    let now = T0;
    const clock = () => now;
    // Two apps run their own background sweepers on the same clock, beside
    // the two replicas' liveness services this test drives.
    const [app] = await Promise.all([ctx.app({ clock }), ctx.app({ clock })]);
    assert.ok(app);
    const replica = () => {
      const wiring = ctx.wiring({ clock });
      return wireLiveness({ ...wiring, sessions: wireSessions(wiring).store }).service;
    };
    const [first, second] = [replica(), replica()];
    assert.equal((await adminClient(app).post('/v1/tenants', { id: 'fleet', name: 'Fleet' })).statusCode, 201);
    const ids = Array.from({ length: DEVICES }, () => randomUUID());
    const pool = new pg.Pool({ connectionString: ctx.db.url, max: 1 });
    try {
      await pool.query(
        `INSERT INTO devices (id, tenant_id, name, offline_threshold_s) SELECT id, 'fleet', 'sensor', 30 FROM unnest($1::uuid[]) AS id`,
        [ids],
      );
    } finally {
      await pool.end();
    }

    // Telemetry lands on either replica.
    await Promise.all(
      ids.map((id, index) =>
        (index % 2 ? first : second).recordTelemetry({ id, tenantId: 'fleet', offlineThresholdS: 30 }, now),
      ),
    );
    now = T0 + 35_000;
    const sweeps = await Promise.all(
      [first, second, first, second, first, second].map((replica) => replica.sweep()),
    );
    assert.ok(sweeps.reduce((sum, sweep) => sum + sweep.expired, 0) <= DEVICES);

    const records = await consumeRecords([`${ctx.config.kafka.topicPrefix}device.events.fleet`], 2 * DEVICES, {
      settleMs: 3000,
      timeoutMs: 60_000,
    });
    const byType = (type: string) =>
      records.map((record) => JSON.parse(record.value ?? '{}') as { type: string; device_id: string }).filter((event) => event.type === type);
    const offline = byType('offline');
    assert.equal(offline.length, DEVICES, 'one offline event per device, no duplicates');
    assert.deepEqual(new Set(offline.map((event) => event.device_id)), new Set(ids));
    assert.equal(byType('online').length, DEVICES);

    const listed = await adminClient(app).get('/v1/tenants/fleet/devices?status=online&limit=500');
    assert.deepEqual(listed.json().items, [], 'Postgres shows every device offline');
  });
});
