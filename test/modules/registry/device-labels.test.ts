import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';

interface DeviceBody {
  id: string;
  labels: Record<string, string>;
}

describe('device labels', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let admin: AdminClient;

  const create = async (tenant: string, name: string, labels?: Record<string, string>) => {
    const response = await admin.post(`/v1/tenants/${tenant}/devices`, { name, ...(labels ? { labels } : {}) });
    assert.equal(response.statusCode, 201, response.body);
    return response.json() as DeviceBody;
  };
  /** The names of the devices a label query lists, through every page. */
  const listed = async (tenant: string, query: string, limit = 2) => {
    const names: string[] = [];
    let cursor: string | null = null;
    do {
      const response = await admin.get(`/v1/tenants/${tenant}/devices?limit=${limit}&${query}${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(response.statusCode, 200, response.body);
      const page = response.json() as { items: { name: string }[]; next_cursor: string | null };
      names.push(...page.items.map((item) => item.name));
      cursor = page.next_cursor;
    } while (cursor);
    return names;
  };

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
    admin = adminClient(app);
    await admin.post('/v1/tenants', { id: 'acme', name: 'Acme' });
    await admin.post('/v1/tenants', { id: 'globex', name: 'Globex' });
  });
  after(() => ctx.close());

  it('sets labels on create, returns them with the device, and replaces them whole on PATCH', async () => {
    const device = await create('acme', 'labelled', { site: 'berlin', 'model.rev': 'tx-40/b', constructor: 'x' });
    assert.deepEqual(device.labels, { site: 'berlin', 'model.rev': 'tx-40/b', constructor: 'x' });
    assert.deepEqual((await admin.get(`/v1/devices/${device.id}`)).json().labels, device.labels);
    assert.deepEqual((await create('acme', 'bare')).labels, {});

    const patched = await admin.patch(`/v1/devices/${device.id}`, { labels: { site: 'paris' } });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.deepEqual(patched.json().labels, { site: 'paris' });
    assert.deepEqual((await admin.patch(`/v1/devices/${device.id}`, { labels: {} })).json().labels, {});
    assert.deepEqual((await admin.patch(`/v1/devices/${device.id}`, { name: 'renamed' })).json().labels, {}, 'a patch without labels keeps them');
  });

  it('answers 400 naming the label for a bad key, a long value or too many labels', async () => {
    const tooMany = Object.fromEntries(Array.from({ length: 33 }, (_, index) => [`k${index}`, 'v']));
    const cases: [unknown, RegExp][] = [
      [{ Site: 'berlin' }, /^body\.labels\.Site: a label key is/],
      [{ '-site': 'berlin' }, /^body\.labels\.-site: /],
      [{ ['k'.repeat(64)]: 'v' }, /^body\.labels\.k+: /],
      [{ site: 'x'.repeat(129) }, /^body\.labels\.site: a label value is at most 128 characters/],
      [{ site: 7 }, /^body\.labels\.site: /],
      [tooMany, /^body\.labels: at most 32 labels/],
      [['site', 'berlin'], /^body\.labels: /],
    ];
    for (const [labels, message] of cases) {
      const response = await admin.post('/v1/tenants/acme/devices', { name: 'bad', labels });
      assert.equal(response.statusCode, 400, JSON.stringify(labels));
      assert.match(response.json().message, message);
    }
    const exactly32 = Object.fromEntries(Array.from({ length: 32 }, (_, index) => [`k${index}`, 'v'.repeat(128)]));
    assert.equal((await admin.post('/v1/tenants/acme/devices', { name: 'full', labels: exactly32 })).statusCode, 201);
  });

  it('lists the devices carrying every label asked for, page by page, within the tenant only', async () => {
    await create('globex', 'globex-berlin', { site: 'berlin', model: 'tx-40' });
    for (let index = 0; index < 5; index++) await create('globex', `globex-${index}`, { site: 'rome', model: index % 2 ? 'tx-40' : 'tx-50' });
    await create('globex', 'globex-escaped', { site: 'a=b "c"', model: 'tx-40' });

    assert.deepEqual(await listed('globex', 'label=site=rome'), ['globex-0', 'globex-1', 'globex-2', 'globex-3', 'globex-4']);
    assert.deepEqual(await listed('globex', 'label=site=rome&label=model=tx-40'), ['globex-1', 'globex-3']);
    assert.deepEqual(await listed('globex', 'label=model=tx-40', 1), ['globex-berlin', 'globex-1', 'globex-3', 'globex-escaped']);
    assert.deepEqual(await listed('globex', `label=${encodeURIComponent('site=a=b "c"')}`), ['globex-escaped']);
    assert.deepEqual(await listed('globex', 'label=site=berlin&label=site=rome'), [], 'one key with two values matches nothing');
    assert.deepEqual(await listed('globex', 'label=site=berlin&label=site=berlin'), ['globex-berlin']);
    assert.deepEqual(await listed('globex', 'label=site=rome&status=online'), []);
    assert.deepEqual(await listed('globex', 'label=site=rome&status=offline'), ['globex-0', 'globex-1', 'globex-2', 'globex-3', 'globex-4']);
    assert.deepEqual(await listed('acme', 'label=model=tx-40'), [], "another tenant's labels are not this tenant's");
    assert.deepEqual(await listed('globex', 'label=site='), [], 'an empty value is a value');
  });

  it('answers 400 naming the label parameter for a selector that is not key=value', async () => {
    for (const query of ['label=site', 'label=Site=x', `label=site=${'x'.repeat(129)}`, 'label==x']) {
      const response = await admin.get(`/v1/tenants/acme/devices?${query}`);
      assert.equal(response.statusCode, 400, query);
      assert.match(response.json().message, /^querystring\.label: /);
    }
  });

  it('records label changes in the audit log, and does not make replicas read the device again', async () => {
    const device = await create('acme', 'audited');
    const db = new pg.Pool({ connectionString: ctx.db.url, max: 1 });
    const changes = async () => (await db.query<{ count: string }>('SELECT count(*) FROM credential_changes')).rows[0]?.count;
    const before = await changes();
    await admin.patch(`/v1/devices/${device.id}`, { labels: { floor: '3' } });
    assert.equal(await changes(), before);
    await db.end();
    const audit = (await admin.get(`/v1/audit?object_id=${device.id}`)).json() as { items: { action: string; details: { fields?: string[] } }[] };
    assert.deepEqual(audit.items.find((entry) => entry.action === 'device.update')?.details.fields, ['labels']);
  });
});
