import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { testKafka } from '../../helpers/kafka.js';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { readChangeLog } from '../../helpers/change-signals.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';

/** Pages through a list endpoint, returning every id in order. */
async function collectPages(admin: AdminClient, url: string, limit: number): Promise<string[][]> {
  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const response = await admin.get(`${url}?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { items: { id: string }[]; next_cursor: string | null };
    pages.push(body.items.map((item) => item.id));
    cursor = body.next_cursor;
  } while (cursor);
  return pages;
}

describe('tenants and devices', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let admin: AdminClient;
  let now = Date.parse('2026-11-24T12:00:00.000Z');

  before(async () => {
    ctx = await createTestContext();
    // A frozen clock: many rows share one created_at, which pagination must still order.
    app = await ctx.app({ clock: () => now });
    admin = adminClient(app);
  });
  after(() => ctx.close());

  it('creates a tenant with its Kafka topics', async () => {
    const response = await admin.post('/v1/tenants', { id: 'acme', name: 'Acme Corp' });
    assert.equal(response.statusCode, 201, response.body);
    assert.deepEqual(response.json(), {
      id: 'acme',
      name: 'Acme Corp',
      device_count: 0,
      created_at: '2026-11-24T12:00:00.000Z',
      updated_at: '2026-11-24T12:00:00.000Z',
    });
    const kafka = testKafka('dlm-test');
    const kafkaAdmin = kafka.admin();
    await kafkaAdmin.connect();
    const topics = await kafkaAdmin.listTopics();
    await kafkaAdmin.disconnect();
    const prefix = ctx.config.kafka.topicPrefix;
    for (const topic of ['telemetry.raw.acme', 'telemetry.dlq.acme', 'device.events.acme']) {
      assert.ok(topics.includes(`${prefix}${topic}`), `${topic} exists`);
    }
  });

  it('generates a tenant id when none is given, and refuses a taken id with 409', async () => {
    const generated = await admin.post('/v1/tenants', { name: 'Unnamed' });
    assert.equal(generated.statusCode, 201);
    assert.match(generated.json().id, /^[0-9a-f-]{36}$/);
    const duplicate = await admin.post('/v1/tenants', { id: 'acme', name: 'Again' });
    assert.equal(duplicate.statusCode, 409);
    assert.equal(duplicate.json().code, 'tenant_exists');
  });

  it('answers 503, not 500, while Postgres cannot be reached: the request may succeed later', async () => {
    const noPostgres = adminClient(await ctx.app({}, { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }));
    for (const response of [await noPostgres.get('/v1/tenants'), await noPostgres.post('/v1/tenants/acme/devices', { name: 'x' })]) {
      assert.equal(response.statusCode, 503, response.body);
      assert.equal(response.json().code, 'unavailable');
    }
  });

  it('answers 400 naming the bad field', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['/v1/tenants', { id: 'Bad Id!', name: 'x' }, /^body\.id: /],
      ['/v1/tenants', { name: 'x'.repeat(201) }, /^body\.name: /],
      ['/v1/tenants', { name: 'x', extra: 1 }, /extra/],
      ['/v1/tenants', {}, /^body\.name: /],
      ['/v1/tenants/acme/devices', { name: 'd', id: 'not-a-uuid' }, /^body\.id: must be a UUID/],
      ['/v1/tenants/acme/devices', { name: 'd', offline_threshold_s: 5 }, /^body\.offline_threshold_s: /],
      ['/v1/tenants/acme/devices', { name: 'd', decoder: { type: 'xml' } }, /^body\.decoder\.type: /],
      ['/v1/tenants/acme/devices', { name: 'd', decoder: { timestamp: { field: 'ts', unit: 'minutes' } } }, /^body\.decoder\.timestamp\.unit: /],
    ];
    for (const [url, body, message] of cases) {
      const response = await admin.post(url, body);
      assert.equal(response.statusCode, 400, `${JSON.stringify(body)}: ${response.body}`);
      const error = response.json();
      assert.equal(error.code, 'validation_failed');
      assert.match(error.message, message);
      assert.equal(typeof error.requestId, 'string');
    }
    const badParam = await admin.get('/v1/devices/12345');
    assert.equal(badParam.statusCode, 400);
    assert.match(badParam.json().message, /^params\.deviceId: must be a UUID/);
    const badLimit = await admin.get('/v1/tenants?limit=501');
    assert.match(badLimit.json().message, /^querystring\.limit: /);
    const badCursor = await admin.get('/v1/tenants?cursor=bm9wZQ');
    assert.equal(badCursor.statusCode, 400);
    assert.match(badCursor.json().message, /^querystring\.cursor: /);
  });

  it('creates devices with given (normalized) or generated UUIDs; ids are unique across tenants', async () => {
    await admin.post('/v1/tenants', { id: 'globex', name: 'Globex' });
    const id = randomUUID();
    const created = await admin.post('/v1/tenants/acme/devices', {
      id: id.toUpperCase(),
      name: 'Boiler 7',
      offline_threshold_s: 300,
      decoder: { timestamp: { field: 'meta.ts', unit: 'ms' } },
    });
    assert.equal(created.statusCode, 201, created.body);
    assert.deepEqual(created.json(), {
      id,
      tenant_id: 'acme',
      name: 'Boiler 7',
      disabled: false,
      offline_threshold_s: 300,
      decoder: { type: 'json', timestamp: { field: 'meta.ts', unit: 'ms' } },
      labels: {},
      created_at: '2026-11-24T12:00:00.000Z',
      updated_at: '2026-11-24T12:00:00.000Z',
      online: false,
      last_seen_at: null,
    });
    const elsewhere = await admin.post('/v1/tenants/globex/devices', { id, name: 'Clash' });
    assert.equal(elsewhere.statusCode, 409);
    assert.equal(elsewhere.json().code, 'device_exists');
    const generated = await admin.post('/v1/tenants/acme/devices', { name: 'Defaults' });
    assert.equal(generated.json().offline_threshold_s, 120);
    assert.equal(generated.json().decoder, null);
    assert.equal((await admin.post('/v1/tenants/nobody/devices', { name: 'x' })).statusCode, 404);
    assert.equal((await admin.get(`/v1/devices/${id}`)).json().name, 'Boiler 7');
    assert.equal((await admin.get(`/v1/devices/${randomUUID()}`)).statusCode, 404);
  });

  it('pages through devices without duplicates or gaps, even when they share a creation time', async () => {
    assert.equal((await admin.post('/v1/tenants', { id: 'paging', name: 'Paging' })).statusCode, 201);
    const ids: string[] = [];
    for (let i = 0; i < 23; i++) {
      if (i % 5 === 0) now += 1; // groups of rows created in the same millisecond
      const response = await admin.post('/v1/tenants/paging/devices', { name: `device ${i}` });
      ids.push(response.json().id);
    }
    const pages = await collectPages(admin, '/v1/tenants/paging/devices', 5);
    assert.deepEqual(pages.map((page) => page.length), [5, 5, 5, 5, 3]);
    const seen = pages.flat();
    assert.equal(new Set(seen).size, 23);
    assert.deepEqual([...seen].sort(), [...ids].sort());
    const tenantPages = await collectPages(admin, '/v1/tenants', 2);
    assert.ok(tenantPages.flat().includes('paging'));
    assert.equal(new Set(tenantPages.flat()).size, tenantPages.flat().length);
  });

  it('PATCH changes the named fields and signals caches; DELETE removes the device', async () => {
    const signals = await readChangeLog(ctx);
    try {
      const device = (await admin.post('/v1/tenants/acme/devices', { name: 'Patchable' })).json();
      assert.equal((await admin.patch(`/v1/devices/${device.id}`, {})).statusCode, 400);
      assert.match((await admin.patch(`/v1/devices/${device.id}`, { colour: 'red' })).json().message, /colour/);

      now += 1000;
      const disabled = await admin.patch(`/v1/devices/${device.id}`, { disabled: true, name: 'Renamed' });
      assert.equal(disabled.statusCode, 200, disabled.body);
      assert.equal(disabled.json().disabled, true);
      assert.equal(disabled.json().name, 'Renamed');
      assert.equal(disabled.json().updated_at, new Date(now).toISOString());
      await signals.next((c) => c.kind === 'device_disabled' && c.device_id === device.id && c.tenant_id === 'acme');

      await admin.patch(`/v1/devices/${device.id}`, { disabled: false });
      await signals.next((c) => c.kind === 'device_enabled' && c.device_id === device.id);

      const tuned = await admin.patch(`/v1/devices/${device.id}`, { offline_threshold_s: 600, decoder: null });
      assert.equal(tuned.json().offline_threshold_s, 600);
      await signals.next((c) => c.kind === 'device_updated' && c.device_id === device.id);

      assert.equal((await admin.delete(`/v1/devices/${device.id}`)).statusCode, 204);
      await signals.next((c) => c.kind === 'device_deleted' && c.device_id === device.id);
      assert.equal((await admin.get(`/v1/devices/${device.id}`)).statusCode, 404);
      assert.equal((await admin.delete(`/v1/devices/${device.id}`)).statusCode, 404);
    } finally {
      await signals.close();
    }
  });

  it('refuses to delete a tenant with devices unless forced', async () => {
    const signals = await readChangeLog(ctx);
    try {
      await admin.post('/v1/tenants', { id: 'doomed', name: 'Doomed' });
      const device = (await admin.post('/v1/tenants/doomed/devices', { name: 'last one' })).json();
      const refused = await admin.delete('/v1/tenants/doomed');
      assert.equal(refused.statusCode, 409);
      assert.equal(refused.json().code, 'tenant_has_devices');
      assert.equal((await admin.delete('/v1/tenants/doomed?force=true')).statusCode, 204);
      await signals.next((c) => c.kind === 'device_deleted' && c.device_id === device.id);
      assert.equal((await admin.get('/v1/tenants/doomed')).statusCode, 404);
      assert.equal((await admin.get(`/v1/devices/${device.id}`)).statusCode, 404);
      await admin.post('/v1/tenants', { id: 'empty', name: 'Empty' });
      assert.equal((await admin.delete('/v1/tenants/empty')).statusCode, 204);
    } finally {
      await signals.close();
    }
  });
});
