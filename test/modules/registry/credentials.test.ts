import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import argon2 from 'argon2';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { adminClient, logCapture, type AdminClient } from '../../helpers/admin.js';
import { readChangeLog } from '../../helpers/change-signals.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { TEST_KEY_DIGEST_SECRET } from '../../helpers/env.js';

describe('device keys and PSKs', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let admin: AdminClient;
  let db: pg.Pool;
  let now = Date.parse('2026-11-24T12:00:00.000Z');
  const logs = logCapture();
  let deviceId: string;
  const issuedSecrets: string[] = [];

  before(async () => {
    ctx = await createTestContext({ LOG_LEVEL: 'trace' });
    app = await ctx.app({ clock: () => now, logStream: logs.stream });
    admin = adminClient(app);
    db = new pg.Pool({ connectionString: ctx.db.url, max: 2 });
    await admin.post('/v1/tenants', { id: 'acme', name: 'Acme' });
    deviceId = (await admin.post('/v1/tenants/acme/devices', { name: 'Pump' })).json().id;
  });
  after(async () => {
    await db.end();
    await ctx.close();
  });

  const keysOf = async () => (await admin.get(`/v1/devices/${deviceId}/keys`)).json().items as Record<string, unknown>[];

  it('issues a key whose secret is returned once and stored only as a keyed digest', async () => {
    const response = await admin.post(`/v1/devices/${deviceId}/keys`, { label: 'factory' });
    assert.equal(response.statusCode, 201, response.body);
    const issued = response.json();
    issuedSecrets.push(issued.key);
    assert.match(issued.key, /^sk_live_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
    assert.equal(issued.key.slice(8, 20), issued.id);
    assert.deepEqual({ ...issued, key: undefined }, {
      id: issued.id,
      display_prefix: `sk_live_${issued.id}_…`,
      label: 'factory',
      state: 'active',
      created_at: '2026-11-24T12:00:00.000Z',
      not_after: null,
      revoked_at: null,
      last_used_at: null,
      key: undefined,
    });
    const { rows } = await db.query('SELECT scheme, hash FROM device_keys WHERE id = $1', [issued.id]);
    assert.equal(rows[0].scheme, 'hmac-sha256');
    assert.equal(rows[0].hash, createHmac('sha256', TEST_KEY_DIGEST_SECRET).update(issued.key).digest('base64url'));
    assert.ok(!rows[0].hash.includes(issued.key.slice(21)));
  });

  it('never shows a key again: not in listings, device reads, the audit log or any log line', async () => {
    const listing = await admin.get(`/v1/devices/${deviceId}/keys`);
    const device = await admin.get(`/v1/devices/${deviceId}`);
    const audit = await db.query('SELECT * FROM audit_log');
    const everything = [listing.body, device.body, JSON.stringify(audit.rows), logs.text()].join('\n');
    assert.ok(logs.lines.length > 0, 'logs were captured');
    for (const secret of issuedSecrets) {
      assert.ok(!everything.includes(secret), 'the key appears nowhere');
      assert.ok(!everything.includes(secret.slice(21)), 'not even its secret part');
    }
    assert.ok(!listing.body.includes('hash'));
  });

  it('validates not_after and caps the number of usable keys', async () => {
    const past = await admin.post(`/v1/devices/${deviceId}/keys`, { not_after: '2026-11-24T11:00:00Z' });
    assert.equal(past.statusCode, 400);
    assert.match(past.json().message, /^body\.not_after: must be in the future/);
    assert.match((await admin.post(`/v1/devices/${deviceId}/keys`, { not_after: 'tomorrow' })).json().message, /^body\.not_after/);
    const bounded = await admin.post(`/v1/devices/${deviceId}/keys`, { not_after: '2026-12-01T00:00:00Z' });
    assert.equal(bounded.json().state, 'expiring');
    assert.equal(bounded.json().not_after, '2026-12-01T00:00:00.000Z');
    issuedSecrets.push(bounded.json().key);
    const other = (await admin.post('/v1/tenants/acme/devices', { name: 'Many keys' })).json().id;
    for (let i = 0; i < 10; i++) assert.equal((await admin.post(`/v1/devices/${other}/keys`)).statusCode, 201);
    const refused = await admin.post(`/v1/devices/${other}/keys`);
    assert.equal(refused.statusCode, 409);
    assert.equal(refused.json().code, 'too_many_keys');
  });

  it('rotation overlaps old and new keys for the grace period, then the old ones expire', async () => {
    const signals = await readChangeLog(ctx);
    try {
      const device = (await admin.post('/v1/tenants/acme/devices', { name: 'Rotating' })).json().id;
      const first = (await admin.post(`/v1/devices/${device}/keys`, { label: 'v1' })).json();
      const revoked = (await admin.post(`/v1/devices/${device}/keys`, { label: 'gone' })).json();
      await admin.delete(`/v1/devices/${device}/keys/${revoked.id}`);

      now += 60_000;
      const rotated = await admin.post(`/v1/devices/${device}/keys/rotate`, { grace_period_s: 3600, label: 'v2' });
      assert.equal(rotated.statusCode, 201, rotated.body);
      const second = rotated.json();
      assert.deepEqual(second.expiring_key_ids, [first.id]);
      assert.equal(second.previous_keys_not_after, new Date(now + 3_600_000).toISOString());
      assert.equal(second.state, 'active');
      await signals.next((c) => c.kind === 'keys_rotated' && c.device_id === device);

      const states = async () =>
        Object.fromEntries(
          ((await admin.get(`/v1/devices/${device}/keys`)).json().items as { label: string; state: string }[]).map((k) => [k.label, k.state]),
        );
      assert.deepEqual(await states(), { v1: 'expiring', gone: 'revoked', v2: 'active' });
      now += 3_600_000;
      assert.deepEqual(await states(), { v1: 'expired', gone: 'revoked', v2: 'active' });

      // A second rotation leaves the expired key alone and starts v2's grace period.
      const third = (await admin.post(`/v1/devices/${device}/keys/rotate`, { grace_period_s: 0 })).json();
      assert.deepEqual(third.expiring_key_ids, [second.id]);
      assert.deepEqual(await states(), { v1: 'expired', gone: 'revoked', v2: 'expired', null: 'active' });
      for (const bad of [{ grace_period_s: -1 }, { grace_period_s: 1.5 }, {}, { grace_period_s: 31 * 86400 }]) {
        const response = await admin.post(`/v1/devices/${device}/keys/rotate`, bad);
        assert.equal(response.statusCode, 400);
        assert.match(response.json().message, /^body\.grace_period_s: /);
      }
    } finally {
      await signals.close();
    }
  });

  it('rotations cannot exceed the usable-key limit: keys in a grace period count until it ends', async () => {
    const device = (await admin.post('/v1/tenants/acme/devices', { name: 'Rotated often' })).json().id;
    assert.equal((await admin.post(`/v1/devices/${device}/keys`)).statusCode, 201);
    const answers: number[] = [];
    for (let rotation = 0; rotation < 14; rotation++) answers.push((await admin.post(`/v1/devices/${device}/keys/rotate`, { grace_period_s: 3600 })).statusCode);
    assert.deepEqual(answers, [...Array(9).fill(201), ...Array(5).fill(409)]);
    const refused = await admin.post(`/v1/devices/${device}/keys/rotate`, { grace_period_s: 3600 });
    assert.equal(refused.json().code, 'too_many_keys');
    assert.match(refused.json().message, /the limit is 10/);
    const usable = ((await admin.get(`/v1/devices/${device}/keys?limit=100`)).json().items as { state: string }[]).filter((k) => k.state === 'active' || k.state === 'expiring');
    assert.equal(usable.length, 10);
    assert.equal((await admin.post(`/v1/devices/${device}/keys`)).statusCode, 409, 'issuing is held to the same limit');
    // A rotation without a grace period ends the others at once, so it always has room.
    assert.equal((await admin.post(`/v1/devices/${device}/keys/rotate`, { grace_period_s: 0 })).statusCode, 201);
  });

  it('revoking signals the key; revoking again is harmless; unknown keys are 404', async () => {
    const signals = await readChangeLog(ctx);
    try {
      const key = (await admin.post(`/v1/devices/${deviceId}/keys`)).json();
      now += 1000;
      assert.equal((await admin.delete(`/v1/devices/${deviceId}/keys/${key.id}`)).statusCode, 204);
      const change = await signals.next((c) => c.kind === 'key_revoked' && c.key_id === key.id);
      assert.deepEqual(change, { kind: 'key_revoked', device_id: deviceId, tenant_id: 'acme', key_id: key.id, at: new Date(now).toISOString() });
      const listed = (await keysOf()).find((k) => k.id === key.id);
      assert.equal(listed?.state, 'revoked');
      assert.equal(listed?.revoked_at, new Date(now).toISOString());
      assert.equal((await admin.delete(`/v1/devices/${deviceId}/keys/${key.id}`)).statusCode, 204);
      assert.equal((await admin.delete(`/v1/devices/${deviceId}/keys/aaaaaaaaaaaa`)).statusCode, 404);
      assert.equal((await admin.delete(`/v1/devices/${deviceId}/keys/NOT-A-KEY`)).statusCode, 400);
      const audits = await db.query(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'key.revoke' AND object_id = $1`, [key.id]);
      assert.equal(audits.rows[0].n, 1);
    } finally {
      await signals.close();
    }
  });

  it('sets, replaces and deletes a PSK, stored as argon2id and signalled each time', async () => {
    const signals = await readChangeLog(ctx);
    try {
      const tooShort = await admin.put(`/v1/devices/${deviceId}/psk`, { psk: 'fifteen-chars!!' });
      assert.equal(tooShort.statusCode, 400);
      assert.match(tooShort.json().message, /^body\.psk: must be at least 16 characters/);
      const psk = 'correct horse battery staple';
      assert.equal((await admin.put(`/v1/devices/${deviceId}/psk`, { psk })).statusCode, 204);
      await signals.next((c) => c.kind === 'psk_set' && c.device_id === deviceId);
      const { rows } = await db.query('SELECT hash FROM device_psk WHERE device_id = $1', [deviceId]);
      assert.match(rows[0].hash, /^\$argon2id\$/);
      assert.ok(await argon2.verify(rows[0].hash, psk));
      assert.equal((await admin.put(`/v1/devices/${deviceId}/psk`, { psk: `${psk} v2` })).statusCode, 204);
      assert.equal((await db.query(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'psk.replace'`)).rows[0].n, 1);
      await signals.next((c) => c.kind === 'psk_replaced' && c.device_id === deviceId);
      assert.equal((await admin.delete(`/v1/devices/${deviceId}/psk`)).statusCode, 204);
      await signals.next((c) => c.kind === 'psk_deleted' && c.device_id === deviceId);
      assert.equal((await admin.delete(`/v1/devices/${deviceId}/psk`)).statusCode, 404);
      assert.ok(!logs.text().includes(psk), 'the PSK never reaches a log line');
      assert.ok(!JSON.stringify((await db.query('SELECT * FROM audit_log')).rows).includes(psk));
    } finally {
      await signals.close();
    }
  });
});
