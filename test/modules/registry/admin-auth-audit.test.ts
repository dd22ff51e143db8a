import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, logCapture, type AdminClient } from '../../helpers/admin.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { TEST_ADMIN_TOKEN } from '../../helpers/env.js';

/** What the service's request ids look like: the process's random part, then a counter. */
const SERVICE_ID = /^[0-9a-f]{24}-[0-9a-z]+$/;

describe('admin tokens, tenant scope and the audit log', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let root: AdminClient;
  let scoped: AdminClient;
  let scopedTokenId: string;
  let scopedToken: string;
  let ownDevice: string;
  let otherDevice: string;
  const logs = logCapture();

  before(async () => {
    ctx = await createTestContext({ LOG_LEVEL: 'trace' });
    app = await ctx.app({ logStream: logs.stream });
    root = adminClient(app);
    await root.post('/v1/tenants', { id: 'acme', name: 'Acme' });
    await root.post('/v1/tenants', { id: 'globex', name: 'Globex' });
    ownDevice = (await root.post('/v1/tenants/acme/devices', { name: 'own' })).json().id;
    otherDevice = (await root.post('/v1/tenants/globex/devices', { name: 'other' })).json().id;
    const created = await root.post('/v1/admin-tokens', { label: 'acme ops', tenant_id: 'acme' });
    assert.equal(created.statusCode, 201, created.body);
    scopedTokenId = created.json().id;
    scopedToken = created.json().token;
    scoped = adminClient(app, scopedToken);
  });
  after(() => ctx.close());

  it('answers 401 for a missing, malformed, unknown or revoked token', async () => {
    const extra = await root.post('/v1/admin-tokens', { label: 'short-lived' });
    const { id, token } = extra.json();
    assert.match(token, /^dlm_at_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
    assert.equal((await adminClient(app, token).get('/v1/tenants')).statusCode, 200);
    assert.equal((await root.delete(`/v1/admin-tokens/${id}`)).statusCode, 204);
    const unknown = `dlm_at_${'a'.repeat(12)}_${'b'.repeat(43)}`;
    for (const client of [adminClient(app, null), adminClient(app, 'nope'), adminClient(app, unknown), adminClient(app, token), adminClient(app, `${scopedToken}x`)]) {
      const response = await client.get('/v1/tenants');
      assert.equal(response.statusCode, 401);
      assert.deepEqual(Object.keys(response.json()).sort(), ['code', 'error', 'message', 'requestId', 'statusCode']);
    }
    const basic = await app.inject({ method: 'GET', url: '/v1/tenants', headers: { authorization: 'Basic abc' } });
    assert.equal(basic.statusCode, 401);
  });

  it('lists tokens without their secrets', async () => {
    const listing = await root.get('/v1/admin-tokens');
    assert.equal(listing.statusCode, 200);
    const item = listing.json().items.find((t: { id: string }) => t.id === scopedTokenId);
    assert.deepEqual(Object.keys(item).sort(), ['created_at', 'id', 'label', 'revoked_at', 'tenant_id']);
    assert.equal(item.tenant_id, 'acme');
    assert.ok(!listing.body.includes(scopedToken));
    assert.equal((await root.post('/v1/admin-tokens', { tenant_id: 'nobody' })).statusCode, 404);
  });

  it('a tenant-scoped token sees its own tenant and nothing else exists for it', async () => {
    const tenants = await scoped.get('/v1/tenants');
    assert.deepEqual(tenants.json().items.map((t: { id: string }) => t.id), ['acme']);
    assert.equal((await scoped.get('/v1/tenants/acme')).statusCode, 200);
    assert.equal((await scoped.get(`/v1/devices/${ownDevice}`)).statusCode, 200);
    assert.equal((await scoped.post(`/v1/devices/${ownDevice}/keys`)).statusCode, 201);
    assert.equal((await scoped.post('/v1/tenants/acme/devices', { name: 'made by scoped' })).statusCode, 201);

    const hidden = [
      await scoped.get('/v1/tenants/globex'),
      await scoped.get('/v1/tenants/globex/devices'),
      await scoped.post('/v1/tenants/globex/devices', { name: 'intruder' }),
      await scoped.delete('/v1/tenants/globex'),
      await scoped.get(`/v1/devices/${otherDevice}`),
      await scoped.patch(`/v1/devices/${otherDevice}`, { disabled: true }),
      await scoped.delete(`/v1/devices/${otherDevice}`),
      await scoped.get(`/v1/devices/${otherDevice}/keys`),
      await scoped.post(`/v1/devices/${otherDevice}/keys`),
      await scoped.post(`/v1/devices/${otherDevice}/keys/rotate`, { grace_period_s: 0 }),
      await scoped.delete(`/v1/devices/${otherDevice}/keys/aaaaaaaaaaaa`),
      await scoped.put(`/v1/devices/${otherDevice}/psk`, { psk: 'a-sixteen-char-psk' }),
      await scoped.delete(`/v1/devices/${otherDevice}/psk`),
    ];
    for (const response of hidden) {
      assert.equal(response.statusCode, 404, response.body);
      assert.ok(!response.body.includes('globex') || response.body.includes('tenant globex not found'));
    }
    // Same answer as a device that does not exist at all.
    const missing = await scoped.get('/v1/devices/00000000-0000-4000-8000-000000000000');
    assert.equal(missing.json().code, (await scoped.get(`/v1/devices/${otherDevice}`)).json().code);

    // No existence oracle: an id another tenant holds gets the answer any id
    // the token cannot use gets (its own tenant's here), and says nothing of
    // where the id is used.
    const taken = [
      await scoped.post('/v1/tenants/acme/devices', { id: otherDevice, name: 'clash' }),
      await scoped.post('/v1/tenants/acme/devices', { id: ownDevice, name: 'clash' }),
    ];
    for (const response of taken) {
      assert.equal(response.statusCode, 409);
      assert.equal(response.json().code, 'device_id_unavailable');
      assert.ok(!/exist|globex|acme/.test(response.json().message as string), response.body);
    }
    assert.equal(taken[0]?.json().message.replace(otherDevice, 'ID'), taken[1]?.json().message.replace(ownDevice, 'ID'));

    const globalOnly = [
      await scoped.post('/v1/tenants', { name: 'new' }),
      await scoped.delete('/v1/tenants/acme'),
      await scoped.get('/v1/admin-tokens'),
      await scoped.post('/v1/admin-tokens', {}),
      await scoped.delete(`/v1/admin-tokens/${scopedTokenId}`),
      await scoped.get('/v1/audit'),
    ];
    for (const response of globalOnly) assert.equal(response.statusCode, 403, response.body);
    assert.equal((await root.get(`/v1/devices/${otherDevice}`)).json().disabled, false);
  });

  it('records every write in the audit log with actor, request and source, never a secret', async () => {
    const psk = 'audit-test-psk-value-123';
    await scoped.put(`/v1/devices/${ownDevice}/psk`, { psk });
    const page = await root.get('/v1/audit?limit=500');
    assert.equal(page.statusCode, 200);
    const entries = page.json().items as Record<string, unknown>[];
    const actions = new Set(entries.map((e) => e.action));
    for (const action of ['tenant.create', 'device.create', 'admin_token.create', 'admin_token.revoke', 'key.create', 'psk.set']) {
      assert.ok(actions.has(action), `${action} is audited`);
    }
    const pskEntry = entries.find((e) => e.action === 'psk.set');
    assert.equal(pskEntry?.actor, scopedTokenId);
    assert.equal(pskEntry?.tenant_id, 'acme');
    assert.equal(pskEntry?.object_type, 'device_psk');
    assert.equal(pskEntry?.object_id, ownDevice);
    assert.equal(pskEntry?.source_ip, '127.0.0.1');
    assert.match(String(pskEntry?.request_id), SERVICE_ID);
    assert.ok(!page.body.includes(psk) && !page.body.includes(scopedToken));
    assert.ok(!logs.text().includes(psk) && !logs.text().includes(scopedToken));
    // Newest first.
    const ids = entries.map((e) => Number(e.id));
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a));
  });

  it('audits the request id the service generated; a client\'s x-request-id is kept only as the client\'s', async () => {
    const forged = 'req-1';
    const asClient = (method: 'POST' | 'PATCH', url: string, payload: object, clientId: string) =>
      app.inject({ method, url, payload, headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'x-request-id': clientId } });

    const created = await asClient('POST', '/v1/tenants', { id: 'initech', name: 'Initech' }, forged);
    assert.equal(created.statusCode, 201, created.body);
    const entry = (await root.get('/v1/audit?object_type=tenant&object_id=initech')).json().items[0];
    assert.notEqual(entry.request_id, forged, 'the audit log records the service\'s id, not the client\'s');
    const reported = created.headers['x-request-id'];
    assert.match(String(reported), SERVICE_ID, 'the answer names the id the service gave the request');
    assert.equal(entry.request_id, reported);
    assert.equal(entry.details.client_request_id, forged);
    const logged = logs.lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.reqId === reported);
    assert.ok(logged.length > 0, 'the request is logged under the service\'s id');
    assert.ok(logged.every((line) => line.client_request_id === forged), 'with the client\'s id beside it');

    // An error answer names the service's id as well, in its body and its header.
    const refused = await asClient('POST', '/v1/tenants', { name: 42 }, forged);
    assert.equal(refused.statusCode, 400);
    assert.match(refused.json().requestId, SERVICE_ID);
    assert.equal(refused.json().requestId, refused.headers['x-request-id']);
    assert.notEqual(refused.json().requestId, reported, 'every request gets its own id');

    // A client id that is too long or holds anything but printable ASCII is dropped.
    const device = (await root.post('/v1/tenants/initech/devices', { name: 'renamed' })).json().id as string;
    for (const [name, clientId] of [['too-long', 'x'.repeat(129)], ['control', 'a\u0007b'], ['non-ascii', 'caf\u00e9']] as const) {
      const response = await asClient('PATCH', `/v1/devices/${device}`, { name: `renamed ${name}` }, clientId);
      assert.equal(response.statusCode, 200, response.body);
      const audited = (await root.get(`/v1/audit?object_type=device&object_id=${device}&limit=1`)).json().items[0];
      assert.equal(audited.request_id, response.headers['x-request-id'], name);
      assert.equal('client_request_id' in audited.details, false, name);
    }
  });

  it('filters the audit log by tenant, object and time, and pages through it', async () => {
    const globex = (await root.get('/v1/audit?tenant_id=globex')).json().items as { tenant_id: string }[];
    assert.ok(globex.length > 0 && globex.every((e) => e.tenant_id === 'globex'));
    const byObject = (await root.get(`/v1/audit?object_type=device&object_id=${ownDevice}`)).json().items as { action: string }[];
    assert.deepEqual(byObject.map((e) => e.action), ['device.create']);
    assert.deepEqual((await root.get('/v1/audit?since=2999-01-01T00:00:00Z')).json().items, []);
    assert.deepEqual((await root.get('/v1/audit?until=2000-01-01T00:00:00Z')).json().items, []);
    assert.equal((await root.get('/v1/audit?object_type=planet')).statusCode, 400);

    const all = (await root.get('/v1/audit?limit=500')).json().items.map((e: { id: string }) => e.id);
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const response = await root.get(`/v1/audit?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      const body = response.json() as { items: { id: string }[]; next_cursor: string | null };
      paged.push(...body.items.map((e) => e.id));
      cursor = body.next_cursor;
    } while (cursor);
    assert.deepEqual(paged, all);
  });
});
