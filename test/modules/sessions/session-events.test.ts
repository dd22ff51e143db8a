import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { SessionStore } from '../../../src/modules/sessions/session-store.js';
import { wireSessions } from '../../../src/wiring/sessions.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder } from '../../helpers/devices.js';
import { TEST_HOOK_TOKEN } from '../../helpers/env.js';
import { consumeRecords } from '../../helpers/kafka.js';

describe('session state from client.connected / client.disconnected', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  /** The session state the app keeps, read as it reads it. */
  let sessions: SessionStore;

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
    sessions = wireSessions(ctx.wiring()).store;
  });
  after(() => ctx.close());

  const send = async (payload: Record<string, unknown>) => {
    const response = await app.inject({
      method: 'POST',
      url: '/emqx/events',
      headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` },
      payload,
    });
    assert.equal(response.statusCode, 204, response.body);
  };
  const connected = (id: string, connectedAt: number, peer = '10.0.0.1:40000') =>
    send({ event: 'client.connected', clientid: id, username: id, peername: peer, proto_ver: 5, keepalive: 60, connected_at: connectedAt, timestamp: connectedAt });
  const disconnected = (id: string, connectedAt: number, reason: string, disconnectedAt = connectedAt + 1000) =>
    send({ event: 'client.disconnected', clientid: id, username: id, reason, connected_at: connectedAt, disconnected_at: disconnectedAt, timestamp: disconnectedAt });
  const state = (id: string) => sessions.get(id);

  it('puts connected and disconnected on device.events of a registered device, a stale disconnect not', async () => {
    const seed = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    try {
      const tenant = await seed.tenant();
      const id = await seed.device(tenant);
      await connected(id, Date.parse('2026-11-24T10:00:00Z'));
      await connected(id, Date.parse('2026-11-24T10:05:00Z'));
      await disconnected(id, Date.parse('2026-11-24T10:00:00Z'), 'takenover', Date.parse('2026-11-24T10:05:00.100Z'));
      await disconnected(id, Date.parse('2026-11-24T10:05:00Z'), 'keepalive_timeout', Date.parse('2026-11-24T10:09:00Z'));
      const records = await consumeRecords([`${ctx.config.kafka.topicPrefix}device.events.${tenant}`], 3, { settleMs: 1000 });
      assert.ok(records.every((record) => record.key === id));
      assert.deepEqual(
        records.map((record) => JSON.parse(record.value ?? '')),
        [
          { type: 'connected', tenant_id: tenant, device_id: id, at: '2026-11-24T10:00:00.000Z' },
          { type: 'connected', tenant_id: tenant, device_id: id, at: '2026-11-24T10:05:00.000Z' },
          { type: 'disconnected', tenant_id: tenant, device_id: id, at: '2026-11-24T10:09:00.000Z', reason: 'keepalive_timeout' },
        ],
      );
    } finally {
      await seed.close();
    }
  });

  it('records a connect with peer and protocol, then its disconnect', async () => {
    const id = randomUUID();
    await connected(id, 1000);
    // No CONNECT was authenticated here: nothing says which credential the connection used.
    assert.deepEqual(await state(id), { connected: true, connectedAt: 1000, disconnectedAt: null, reason: null, peer: '10.0.0.1:40000', protoVer: '5', credential: null });
    await disconnected(id, 1000, 'normal', 5000);
    assert.deepEqual(await state(id), { connected: false, connectedAt: 1000, disconnectedAt: 5000, reason: 'normal', peer: '10.0.0.1:40000', protoVer: '5', credential: null });
  });

  it('ignores the old connection’s disconnect arriving after the new connect', async () => {
    const id = randomUUID();
    await connected(id, 1000);
    await connected(id, 2000, '10.0.0.2:40001');
    await disconnected(id, 1000, 'tcp_closed', 2500);
    const current = await state(id);
    assert.equal(current?.connected, true);
    assert.equal(current?.connectedAt, 2000);
    assert.equal(current?.peer, '10.0.0.2:40001');
  });

  it('ignores a takenover or discarded disconnect after the new connect, and even before it', async () => {
    for (const reason of ['takenover', 'discarded']) {
      const id = randomUUID();
      await connected(id, 1000);
      await connected(id, 2000);
      await disconnected(id, 1000, reason, 2001);
      assert.equal((await state(id))?.connected, true, `${reason} after the new connect`);

      const other = randomUUID();
      await connected(other, 1000);
      // Same connected_at as the stored connection, but the reason says a newer session took over.
      await disconnected(other, 1000, reason, 2001);
      assert.equal((await state(other))?.connected, true, `${reason} before the new connect`);
    }
  });

  it('handles a disconnect that arrives before its own connect', async () => {
    const id = randomUUID();
    await connected(id, 1000);
    await disconnected(id, 2000, 'normal', 3000);
    await connected(id, 2000);
    const current = await state(id);
    assert.equal(current?.connected, false);
    assert.equal(current?.connectedAt, 2000);
    assert.equal(current?.reason, 'normal');
  });

  it('is unchanged by duplicated events, and an old connect never overrides a newer one', async () => {
    const id = randomUUID();
    await connected(id, 2000);
    await connected(id, 2000);
    await connected(id, 1000);
    assert.equal((await state(id))?.connectedAt, 2000);
    await disconnected(id, 2000, 'keepalive_timeout', 9000);
    await disconnected(id, 2000, 'keepalive_timeout', 9000);
    await connected(id, 2000);
    assert.deepEqual(
      { connected: (await state(id))?.connected, reason: (await state(id))?.reason, disconnectedAt: (await state(id))?.disconnectedAt },
      { connected: false, reason: 'keepalive_timeout', disconnectedAt: 9000 },
    );
  });

  it('ends in the same state whatever order a sequence of events arrives in', async () => {
    const events = [
      (id: string) => connected(id, 1000),
      (id: string) => disconnected(id, 1000, 'takenover', 2001),
      (id: string) => connected(id, 2000),
      (id: string) => disconnected(id, 2000, 'normal', 3000),
      (id: string) => connected(id, 4000),
    ];
    const orders = [
      [0, 1, 2, 3, 4],
      [4, 3, 2, 1, 0],
      [2, 4, 0, 3, 1],
      [1, 0, 3, 2, 4, 4, 1],
      [3, 4, 1, 2, 0, 3],
    ];
    for (const order of orders) {
      const id = randomUUID();
      for (const index of order) await events[index]!(id);
      const current = await state(id);
      assert.deepEqual({ connected: current?.connected, connectedAt: current?.connectedAt }, { connected: true, connectedAt: 4000 }, order.join(','));
    }
  });

  it('acknowledges events of non-device clients and malformed events without storing them', async () => {
    await send({ event: 'client.connected', clientid: 'dashboard-1', connected_at: 1000 });
    await send({ event: 'client.disconnected', clientid: randomUUID(), reason: 'normal' });
    assert.equal(await state('dashboard-1'), null);
  });

  it('asks EMQX to retry when Redis is unreachable', async () => {
    const infra = ctx.infra();
    const broken = await ctx.app({ infra });
    infra.redis.redis.disconnect();
    const response = await broken.inject({
      method: 'POST',
      url: '/emqx/events',
      headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` },
      payload: { event: 'client.connected', clientid: randomUUID(), connected_at: 1000 },
    });
    assert.equal(response.statusCode, 503);
  });
});
