import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { connectAs } from '../../helpers/emqx-auth.js';

interface Imported {
  devices: { id: string; key?: string }[];
}

describe('device imports', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let admin: AdminClient;
  let scoped: AdminClient;

  const deviceCount = async (tenant: string) => (await admin.get(`/v1/tenants/${tenant}`)).json().device_count as number;
  const importInto = (client: AdminClient, tenant: string, devices: unknown[]) => client.post(`/v1/tenants/${tenant}/device-imports`, { devices });

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
    admin = adminClient(app);
    await admin.post('/v1/tenants', { id: 'acme', name: 'Acme' });
    await admin.post('/v1/tenants', { id: 'globex', name: 'Globex' });
    scoped = adminClient(app, (await admin.post('/v1/admin-tokens', { label: 'acme ops', tenant_id: 'acme' })).json().token);
  });
  after(() => ctx.close());

  it('creates every device in the order given, a key for those that ask, each key shown once and working', async () => {
    const givenId = randomUUID().toUpperCase();
    const response = await importInto(admin, 'acme', [
      { name: 'first', key: true, labels: { site: 'berlin' } },
      { id: givenId, name: 'second', offline_threshold_s: 600 },
      { name: 'third', key: true },
    ]);
    assert.equal(response.statusCode, 201, response.body);
    const { devices } = response.json() as Imported;
    assert.equal(devices.length, 3);
    assert.equal(devices[1]?.id, givenId.toLowerCase());
    assert.deepEqual(devices.map((device) => device.key !== undefined), [true, false, true]);

    const first = (await admin.get(`/v1/devices/${devices[0]?.id}`)).json();
    assert.equal(first.name, 'first');
    assert.deepEqual(first.labels, { site: 'berlin' });
    assert.equal((await admin.get(`/v1/devices/${givenId}`)).json().offline_threshold_s, 600);

    for (const device of [devices[0], devices[2]]) assert.equal(await connectAs(app, device?.id as string, device?.key as string), 'allow');
    assert.equal(await connectAs(app, devices[2]?.id as string, devices[0]?.key as string), 'deny', "one device's key is not another's");
    const keys = (await admin.get(`/v1/devices/${devices[0]?.id}/keys`)).json().items as { display_prefix: string; key?: string }[];
    assert.equal(keys.length, 1);
    assert.equal(keys[0]?.key, undefined);
    assert.ok(devices[0]?.key?.startsWith(keys[0]?.display_prefix.replace('…', '') as string));

    const audit = (await admin.get('/v1/audit?tenant_id=acme&limit=500')).json().items as { action: string; object_id: string; details: object }[];
    const imports = audit.filter((entry) => entry.action === 'device.import');
    assert.equal(imports.length, 1);
    assert.deepEqual(imports[0]?.details, { devices: 3, keys: 2 });
    assert.ok(!JSON.stringify(audit).includes(devices[0]?.key as string), 'no key in the audit log');
  });

  it('answers 400 naming the index and field of a bad entry, and creates nothing', async () => {
    const before = await deviceCount('globex');
    const cases: [unknown[], RegExp][] = [
      [[{ name: 'ok' }, { name: 'ok' }, { name: '' }], /^body\.devices\.2\.name: /],
      [[{ name: 'ok' }, { name: 'ok', labels: { Bad: 'x' } }], /^body\.devices\.1\.labels\.Bad: a label key is/],
      [[{ name: 'ok', offline_threshold_s: 5 }], /^body\.devices\.0\.offline_threshold_s: /],
      [[{ name: 'ok', id: 'not-a-uuid' }], /^body\.devices\.0\.id: must be a UUID/],
      [[{ name: 'ok', disabled: true }], /^body\.devices\.0: .*disabled/],
      [[], /^body\.devices: /],
      [Array.from({ length: 10_001 }, () => ({ name: 'x' })), /^body\.devices: /],
    ];
    for (const [devices, message] of cases) {
      const response = await importInto(admin, 'globex', devices);
      assert.equal(response.statusCode, 400, response.body.slice(0, 200));
      assert.match(response.json().message, message);
    }
    assert.equal(await deviceCount('globex'), before);
  });

  it('answers 409 naming ids given twice or already taken, and creates nothing', async () => {
    const existing = (await admin.post('/v1/tenants/globex/devices', { name: 'existing' })).json().id as string;
    const before = await deviceCount('globex');
    const twice = randomUUID();
    const repeated = await importInto(admin, 'globex', [{ id: twice, name: 'a' }, { name: 'b' }, { id: twice.toUpperCase(), name: 'c' }]);
    assert.equal(repeated.statusCode, 409);
    assert.equal(repeated.json().code, 'duplicate_device_ids');
    assert.match(repeated.json().message, new RegExp(twice));

    const fresh = randomUUID();
    const taken = await importInto(admin, 'globex', [{ id: fresh, name: 'fresh', key: true }, { id: existing, name: 'again' }]);
    assert.equal(taken.statusCode, 409);
    assert.equal(taken.json().code, 'device_exists');
    assert.match(taken.json().message, new RegExp(existing));
    assert.equal(await deviceCount('globex'), before);
    assert.equal((await admin.get(`/v1/devices/${fresh}`)).statusCode, 404, 'the free id was not created either');

    // A tenant-scoped token learns only that it cannot use the id.
    const unavailable = await importInto(scoped, 'acme', [{ id: existing, name: 'mine?' }]);
    assert.equal(unavailable.statusCode, 409);
    assert.equal(unavailable.json().code, 'device_id_unavailable');
    assert.doesNotMatch(unavailable.json().message, /globex/);
  });

  it("answers 404 for another tenant's import with a tenant-scoped token, and for a missing tenant", async () => {
    assert.equal((await importInto(scoped, 'globex', [{ name: 'x' }])).statusCode, 404);
    assert.equal((await importInto(admin, 'nobody', [{ name: 'x' }])).statusCode, 404);
    assert.equal((await importInto(scoped, 'acme', [{ name: 'scoped' }])).statusCode, 201);
  });

  it('imports thousands of devices with keys in one request', async () => {
    const count = 3000;
    const response = await importInto(
      admin,
      'globex',
      Array.from({ length: count }, (_, index) => ({ name: `bulk ${index}`, labels: { batch: 'bulk', shard: String(index % 10) }, key: true })),
    );
    assert.equal(response.statusCode, 201, response.body.slice(0, 200));
    const { devices } = response.json() as Imported;
    assert.equal(devices.length, count);
    assert.equal(new Set(devices.map((device) => device.key)).size, count);
    const last = devices[count - 1];
    assert.equal(await connectAs(app, last?.id as string, last?.key as string), 'allow');
    const shard = (await admin.get('/v1/tenants/globex/devices?label=batch=bulk&label=shard=7&limit=500')).json().items as unknown[];
    assert.equal(shard.length, count / 10);
  });
});
