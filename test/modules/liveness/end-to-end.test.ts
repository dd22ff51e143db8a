import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient } from '../../helpers/admin.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { consumeRecords } from '../../helpers/kafka.js';
import { postEvent, publishEvent } from '../../helpers/telemetry.js';
import { waitFor } from '../../helpers/wait.js';

const T0 = Date.parse('2026-11-24T12:00:00.000Z');

describe('status from EMQX events end to end', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let now = T0;

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app({ clock: () => now });
  });
  after(() => ctx.close());

  it('a connect, then telemetry through /emqx/events: connected and online, with both on device.events', async () => {
    const admin = adminClient(app);
    assert.equal((await admin.post('/v1/tenants', { id: 'plant', name: 'Plant' })).statusCode, 201);
    const id = randomUUID();
    assert.equal((await admin.post('/v1/tenants/plant/devices', { id, name: 'press', offline_threshold_s: 60 })).statusCode, 201);

    const connect = await postEvent(app, {
      event: 'client.connected',
      clientid: id,
      username: id,
      peername: '10.1.2.3:50000',
      proto_ver: 5,
      connected_at: T0,
      timestamp: T0,
    });
    assert.equal(connect.statusCode, 204, connect.body);
    // Connected is not online: telemetry decides.
    assert.equal((await admin.get(`/v1/devices/${id}/status`)).json().online, false);

    now = T0 + 5000;
    const publish = await postEvent(app, publishEvent(id, '{"temperature":22.5}', { publishReceivedAt: now }));
    assert.equal(publish.statusCode, 204, publish.body);

    // Liveness is written by the next flush (LIVENESS_FLUSH_INTERVAL_MS), not before the answer.
    await waitFor(async () => (await admin.get(`/v1/devices/${id}/status`)).json().online === true);
    const status = (await admin.get(`/v1/devices/${id}/status`)).json();
    assert.deepEqual(
      { online: status.online, connected: status.connected, last_seen_at: status.last_seen_at, connected_at: status.connected_at },
      { online: true, connected: true, last_seen_at: new Date(now).toISOString(), connected_at: new Date(T0).toISOString() },
    );
    const events = await consumeRecords([`${ctx.config.kafka.topicPrefix}device.events.plant`], 2);
    assert.deepEqual(
      events.map((record) => JSON.parse(record.value ?? '').type).sort(),
      ['connected', 'online'],
    );
  });
});
