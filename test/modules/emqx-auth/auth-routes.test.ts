import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { SessionStore } from '../../../src/modules/sessions/session-store.js';
import { wireSessions } from '../../../src/wiring/sessions.js';
import { publishChange, untilApplied } from '../../helpers/change-signals.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { TEST_HOOK_TOKEN } from '../../helpers/env.js';
import { connectRedis, keysUnder } from '../../helpers/redis.js';
import { waitFor } from '../../helpers/wait.js';

let peerCounter = 0;
/** A fresh peer address per scenario, so per-peer throttling of one test does not leak into another. */
const nextPeer = () => `10.1.${Math.floor(++peerCounter / 250)}.${peerCounter % 250}`;

describe('POST /emqx/authn and /emqx/authz', () => {
  let ctx: TestContext;
  /** Takeover policy: repeated connects of one device are not refused as duplicates. */
  let app: FastifyInstance;
  /** The default reject policy, for the duplicate-client tests. */
  let rejecting: FastifyInstance;
  let seed: DeviceSeeder;
  let emqx: EmqxSim;
  let tenantId: string;
  /** The session state the apps keep, read as they read it. */
  let sessions: SessionStore;
  let now = Date.now();

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext(emqxEnv(emqx));
    app = await ctx.app({ clock: () => now }, { DUPLICATE_CLIENT_POLICY: 'takeover' });
    rejecting = await ctx.app({ clock: () => now });
    sessions = wireSessions(ctx.wiring()).store;
    seed = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    tenantId = await seed.tenant();
  });
  after(async () => {
    await seed.close();
    await ctx.close();
    await emqx.close();
  });

  const authn = (
    body: Record<string, string>,
    authorization: string | null = `Bearer ${TEST_HOOK_TOKEN}`,
    target: FastifyInstance = app,
  ) =>
    target.inject({
      method: 'POST',
      url: '/emqx/authn',
      headers: authorization === null ? {} : { authorization },
      payload: body,
    });
  const connect = (deviceId: string, password: string, peerhost = nextPeer(), target = app) =>
    authn({ clientid: deviceId, username: deviceId, password, peerhost }, `Bearer ${TEST_HOOK_TOKEN}`, target);
  const authz = (body: Record<string, string>) =>
    app.inject({ method: 'POST', url: '/emqx/authz', headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` }, payload: body });

  /** Asserts the EMQX-visible deny: status 200, JSON, exactly {result:"deny"}. */
  const assertDeny = (response: Awaited<ReturnType<typeof authn>>, what: string) => {
    assert.equal(response.statusCode, 200, what);
    assert.match(String(response.headers['content-type']), /^application\/json/, what);
    assert.deepEqual(response.json(), { result: 'deny' }, what);
  };

  describe('contract (docs/emqx-contract.md §A)', () => {
    it('allows a device key with the device ACL, string client_attrs and no superuser', async () => {
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      const response = await connect(deviceId, key);
      assert.equal(response.statusCode, 200);
      assert.match(String(response.headers['content-type']), /^application\/json/);
      const body = response.json();
      assert.deepEqual(body, {
        result: 'allow',
        is_superuser: false,
        client_attrs: { tenant_id: tenantId, device_id: deviceId },
        acl: [
          { permission: 'allow', action: 'publish', topic: `devices/${deviceId}/telemetry` },
          { permission: 'allow', action: 'subscribe', topic: `devices/${deviceId}/commands` },
          { permission: 'deny', action: 'all', topic: '#' },
        ],
      });
      for (const value of Object.values(body.client_attrs)) assert.equal(typeof value, 'string');
      for (const name of Object.keys(body.client_attrs)) assert.match(name, /^[A-Za-z0-9]+[A-Za-z0-9-_]*$/);
      assert.ok(!response.body.includes(key));
    });

    it('follows EMQX rule grammar and ends the ACL with deny-all', async () => {
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      const { acl } = (await connect(deviceId, key)).json() as { acl: Record<string, unknown>[] };
      for (const rule of acl) {
        assert.ok(['allow', 'deny'].includes(String(rule.permission)));
        assert.ok(['publish', 'subscribe', 'all'].includes(String(rule.action)));
        assert.equal(typeof rule.topic, 'string');
      }
      assert.deepEqual(acl.at(-1), { permission: 'deny', action: 'all', topic: '#' });
    });

    it('sends expire_at in whole Unix seconds when the key has not_after', async () => {
      const deviceId = await seed.device(tenantId);
      const notAfter = new Date(now + 3600_000);
      const { key } = await seed.key(deviceId, { notAfter });
      const body = (await connect(deviceId, key)).json() as { result: string; expire_at: number };
      assert.equal(body.result, 'allow');
      assert.ok(Number.isInteger(body.expire_at));
      assert.equal(body.expire_at, Math.floor(notAfter.getTime() / 1000));
      assert.ok(body.expire_at < 1e11, 'seconds, not milliseconds');
    });

    it('accepts the device PSK', async () => {
      const deviceId = await seed.device(tenantId);
      const psk = await seed.psk(deviceId);
      const body = (await connect(deviceId, psk)).json() as { result: string; expire_at?: number };
      assert.equal(body.result, 'allow');
      assert.equal(body.expire_at, undefined);
    });

    it('answers a missing or wrong hook token with 401, never allow', async () => {
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      const body = { clientid: deviceId, username: deviceId, password: key, peerhost: nextPeer() };
      for (const authorization of [null, 'Bearer wrong-token', `Bearer ${TEST_HOOK_TOKEN}x`, TEST_HOOK_TOKEN]) {
        const response = await authn(body, authorization);
        assert.equal(response.statusCode, 401, String(authorization));
        assert.notEqual(response.json().result, 'allow');
      }
      for (const authorization of [null, 'Bearer wrong-token']) {
        const response = await app.inject({
          method: 'POST',
          url: '/emqx/authz',
          headers: authorization === null ? {} : { authorization },
          payload: { clientid: deviceId, username: deviceId, topic: `devices/${deviceId}/telemetry`, action: 'publish' },
        });
        assert.equal(response.statusCode, 401);
      }
    });
  });

  describe('security: none of these is ever allowed', () => {
    it('wrong key, another device’s key, revoked key, a key of an unknown id', async () => {
      const deviceId = await seed.device(tenantId);
      const other = await seed.device(tenantId);
      const own = await seed.key(deviceId);
      const othersKey = await seed.key(other);
      const revoked = await seed.key(deviceId, { revoked: true });
      const wrongSecret = own.key.slice(0, -4) + (own.key.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      const unknownId = `sk_live_${'a'.repeat(12)}_${own.key.slice(-43)}`;
      for (const [what, password] of [
        ['wrong secret for an existing key id', wrongSecret],
        ['another device’s key', othersKey.key],
        ['revoked key', revoked.key],
        ['unknown key id', unknownId],
        ['random string', 'not-a-key-and-not-the-psk'],
      ] as const) {
        assertDeny(await connect(deviceId, password), what);
      }
    });

    it('an expired key, and a cached key once the clock passes not_after', async () => {
      const deviceId = await seed.device(tenantId);
      const expired = await seed.key(deviceId, { notAfter: new Date(now - 1000) });
      assertDeny(await connect(deviceId, expired.key), 'expired key');

      const expiring = await seed.key(deviceId, { notAfter: new Date(now + 60_000) });
      const peer = nextPeer();
      assert.equal((await connect(deviceId, expiring.key, peer)).json().result, 'allow');
      const saved = now;
      try {
        now += 61_000;
        assertDeny(await connect(deviceId, expiring.key, peer), 'cached key past not_after');
      } finally {
        now = saved;
      }
    });

    it('clientid ≠ username, non-UUID or non-canonical usernames', async () => {
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      const other = await seed.device(tenantId);
      assertDeny(await authn({ clientid: other, username: deviceId, password: key, peerhost: nextPeer() }), 'clientid ≠ username');
      assertDeny(await authn({ clientid: `${deviceId}x`, username: deviceId, password: key, peerhost: nextPeer() }), 'suffix');
      for (const id of ['device-1', '', deviceId.toUpperCase(), `${deviceId} `, "' OR 1=1 --"]) {
        assertDeny(await authn({ clientid: id, username: id, password: key, peerhost: nextPeer() }), `username ${JSON.stringify(id)}`);
      }
    });

    it('disabled, deleted and never-existing devices', async () => {
      const disabled = await seed.device(tenantId, { disabled: true });
      const disabledKey = await seed.key(disabled);
      assertDeny(await connect(disabled, disabledKey.key), 'disabled device');

      const deleted = await seed.device(tenantId);
      const deletedKey = await seed.key(deleted);
      assert.equal((await connect(deleted, deletedKey.key)).json().result, 'allow');
      await seed.query('DELETE FROM devices WHERE id = $1', [deleted]);
      await publishChange(ctx, { kind: 'device_deleted', device_id: deleted, tenant_id: tenantId });
      await waitFor(async () => (await connect(deleted, deletedKey.key)).json().result === 'deny');
      assertDeny(await connect(deleted, deletedKey.key), 'deleted device');

      assertDeny(await connect(randomUUID(), deletedKey.key), 'unknown device');
    });

    it('empty, 1 MB, non-UTF-8-looking and SQL-looking passwords', async () => {
      const deviceId = await seed.device(tenantId);
      await seed.key(deviceId);
      await seed.psk(deviceId);
      const passwords: [string, string][] = [
        ['empty', ''],
        ['60 KB', 'x'.repeat(60 * 1024)],
        ['lone surrogates and replacement characters', '\udc80\ud800\ufffd\u0000\u00ff'],
        ['control bytes', '\u0000\u0001\u0002\u007f'],
        ['SQL', "' OR '1'='1' --"],
        ['SQL in key shape', `sk_live_aaaaaaaaaaaa_${"'; DROP TABLE device_keys; --".padEnd(43, 'a').slice(0, 43)}`],
      ];
      for (const [what, password] of passwords) {
        assertDeny(await connect(deviceId, password), what);
      }
      // Beyond the route's body limit: deny as well, never a 413, which EMQX would log as a failed query.
      assertDeny(await connect(deviceId, 'x'.repeat(1024 * 1024)), '1 MiB');
      const { rows } = await seed.query('SELECT count(*)::int AS n FROM device_keys WHERE device_id = $1', [deviceId]);
      assert.equal(rows[0].n, 1);
    });
  });

  describe('verified-credential cache', () => {
    it('serves a repeat from memory and keeps neither secret nor hash in Redis', async () => {
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      const psk = await seed.psk(deviceId);
      const peer = nextPeer();
      assert.equal((await connect(deviceId, key, peer)).json().result, 'allow');
      assert.equal((await connect(deviceId, psk, peer)).json().result, 'allow');
      assert.equal((await connect(deviceId, key, peer)).json().result, 'allow');
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      assert.match(metrics, /devicelink_authn_total\{result="allow",reason="memory"\} [1-9]/);

      const { redis, close } = connectRedis(ctx.config.redis);
      try {
        const keys = await keysUnder(redis, ctx.config.redis.keyPrefix);
        assert.ok(keys.some((name) => name.includes(':authn:cred:')));
        const values = await Promise.all(
          keys.map(async (name) => {
            const type = await redis.type(name);
            if (type === 'string') return (await redis.get(name)) ?? '';
            if (type === 'hash') return JSON.stringify(await redis.hgetall(name));
            return '';
          }),
        );
        const everything = keys.join('\n') + values.join('\n');
        assert.ok(!everything.includes(key) && !everything.includes(key.slice(-43)), 'no API key in Redis');
        assert.ok(!everything.includes(psk), 'no PSK in Redis');
        assert.ok(!everything.includes('$argon2'), 'no hash in Redis');
      } finally {
        await close();
      }
    });

    it('shares one verification among concurrent checks of the same credential', async () => {
      const deviceId = await seed.device(tenantId);
      const psk = await seed.psk(deviceId);
      await untilApplied([app], 'keys_rotated', () => publishChange(ctx, { kind: 'keys_rotated', device_id: deviceId, tenant_id: tenantId }));
      const before = await verifyCount();
      const peer = nextPeer();
      const results = await Promise.all(Array.from({ length: 10 }, () => connect(deviceId, psk, peer)));
      assert.deepEqual(new Set(results.map((r) => r.json().result)), new Set(['allow']));
      assert.equal((await verifyCount()) - before, 1);
    });

    it('drops entries on a change signal and records last use without a write per connect', async () => {
      const deviceId = await seed.device(tenantId);
      const { key, keyId } = await seed.key(deviceId);
      const peer = nextPeer();
      assert.equal((await connect(deviceId, key, peer)).json().result, 'allow');
      await seed.query('UPDATE device_keys SET revoked_at = now() WHERE id = $1', [keyId]);
      // Still cached: the registry's signal is what makes the revocation visible.
      assert.equal((await connect(deviceId, key, peer)).json().result, 'allow');
      await publishChange(ctx, { kind: 'key_revoked', device_id: deviceId, tenant_id: tenantId, key_id: keyId });
      await waitFor(async () => (await connect(deviceId, key, peer)).json().result === 'deny');
      // The session ends once every replica has read the change (KICK_DELAY_MS after it).
      await waitFor(() => emqx.calls.some((call) => call.method === 'DELETE' && call.clientId === deviceId && call.authorized), 4000);
      await app.close().catch(() => undefined);
      app = await ctx.app({ clock: () => now }, { DUPLICATE_CLIENT_POLICY: 'takeover' });
      const { rows } = await seed.query('SELECT last_used_at FROM device_keys WHERE id = $1', [keyId]);
      assert.ok(rows[0].last_used_at instanceof Date, 'last_used_at flushed on close');
    });
  });

  describe('throttling', () => {
    it('blocks the guessing address for that device without hashing, never the owner connecting from elsewhere', async () => {
      const deviceId = await seed.device(tenantId);
      const psk = await seed.psk(deviceId);
      const { key } = await seed.key(deviceId);
      const spare = await seed.key(deviceId);
      const guesser = nextPeer();
      for (let attempt = 0; attempt < 12; attempt++) assertDeny(await connect(deviceId, `wrong-${attempt}`, guesser), `wrong ${attempt}`);
      const before = await verifyCount();
      assertDeny(await connect(deviceId, psk, guesser), 'the guessing address, though correct');
      assert.equal(await verifyCount(), before, 'no argon2 work while throttled');
      // The owner, from another address, with a key nothing has cached.
      assert.equal((await connect(deviceId, key, nextPeer())).json().result, 'allow');
      assert.equal((await connect(deviceId, psk, nextPeer())).json().result, 'allow');
      // The owner's key is verified and cached now, which no throttle stands in front of;
      // anything not yet verified from the guessing address is still refused unchecked.
      assertDeny(await connect(deviceId, spare.key, guesser), 'the guessing address stays throttled');
      assert.equal((await connect(deviceId, spare.key, nextPeer())).json().result, 'allow');
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      assert.match(metrics, /devicelink_authn_throttled_total\{scope="device_peer"\} [1-9]/);
    });

    it('lets an owner who mistyped from its own address start afresh once it gets in', async () => {
      const deviceId = await seed.device(tenantId);
      const first = await seed.key(deviceId);
      const second = await seed.key(deviceId);
      const home = nextPeer();
      // Four misses stay within the free failures of a device and address (five);
      // without the success between them, eight would block the address.
      for (let attempt = 0; attempt < 4; attempt++) assertDeny(await connect(deviceId, `typo-${attempt}`, home), `typo ${attempt}`);
      assert.equal((await connect(deviceId, first.key, home)).json().result, 'allow');
      for (let attempt = 4; attempt < 8; attempt++) assertDeny(await connect(deviceId, `typo-${attempt}`, home), `typo ${attempt}`);
      assert.equal((await connect(deviceId, second.key, home)).json().result, 'allow', 'an uncached key, checked behind the throttle');
    });

    it("never lets strangers' guesses from many addresses refuse the owner's API key", async () => {
      const deviceId = await seed.device(tenantId);
      const { key, keyId } = await seed.key(deviceId);
      // 300 wrong guesses from 60 addresses, shaped as PSKs and as keys (one of them the real key id).
      const strangers = Array.from({ length: 60 }, () => nextPeer());
      for (let attempt = 0; attempt < 300; attempt++) {
        const guess = attempt % 2 === 0 ? `spread-${attempt}` : `sk_live_${keyId}_${'A'.repeat(42)}${attempt % 10}`;
        assertDeny(await connect(deviceId, guess, strangers[attempt % strangers.length]), `guess ${attempt}`);
      }
      assert.equal((await connect(deviceId, key, nextPeer())).json().result, 'allow', "the owner's key, from its own address");
      // More guesses later keep nothing out either.
      for (let attempt = 0; attempt < 20; attempt++) await connect(deviceId, `later-${attempt}`, strangers[attempt] as string);
      assert.equal((await connect(deviceId, key, nextPeer())).json().result, 'allow');
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      assert.doesNotMatch(metrics, /devicelink_authn_throttled_total\{scope="device"\}/);
    });

    it('blocks PSK guessing spread over many addresses, except from addresses the device authenticated from', async () => {
      const deviceId = await seed.device(tenantId);
      const psk = await seed.psk(deviceId);
      const home = nextPeer();
      assert.equal((await connect(deviceId, psk, home)).json().result, 'allow');
      // The verification is cached; the next check from home must pass the throttle again.
      await untilApplied([app], 'keys_rotated', () => publishChange(ctx, { kind: 'keys_rotated', device_id: deviceId, tenant_id: tenantId }));
      for (let attempt = 0; attempt < 201; attempt++) await connect(deviceId, `spread-${attempt}`, nextPeer());
      assertDeny(await connect(deviceId, psk, nextPeer()), 'an address the device never authenticated from meets the device-wide block');
      assert.equal((await connect(deviceId, psk, home)).json().result, 'allow', 'the owner, from an address it authenticated from');
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      assert.match(metrics, /devicelink_authn_throttled_total\{scope="device"\} [1-9]/);
    });

    it('throttles a peer address that fails across many devices', async () => {
      const peer = nextPeer();
      for (let attempt = 0; attempt < 51; attempt++) await connect(randomUUID(), 'guess', peer);
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      assertDeny(await connect(deviceId, key, peer), 'peer throttled');
      assert.equal((await connect(deviceId, key, nextPeer())).json().result, 'allow');
    });

    it('denies unknown device ids without hashing', async () => {
      const before = await verifyCount();
      assertDeny(await connect(randomUUID(), 'whatever'), 'unknown device');
      assert.equal(await verifyCount(), before);
    });
  });

  describe('duplicate client ids (reject policy)', () => {
    const connectedEvent = (deviceId: string, connectedAt: number) =>
      rejecting.inject({
        method: 'POST',
        url: '/emqx/events',
        headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` },
        payload: { event: 'client.connected', clientid: deviceId, username: deviceId, peername: '10.0.0.1:5000', proto_ver: 5, connected_at: connectedAt },
      });

    it('denies a second connection while the first is live, confirmed with EMQX', async () => {
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      assert.equal((await connect(deviceId, key, nextPeer(), rejecting)).json().result, 'allow');
      assert.equal((await connectedEvent(deviceId, Date.now())).statusCode, 204);
      await emqx.connect(deviceId);
      assertDeny(await connect(deviceId, key, nextPeer(), rejecting), 'second connection');
      assert.ok(emqx.calls.some((call) => call.method === 'GET' && call.clientId === deviceId && call.authorized));
    });

    it('allows when the stored state is stale (EMQX: not found, or connected false) and corrects it', async () => {
      for (const emqxSays of ['not found', 'disconnected'] as const) {
        const deviceId = await seed.device(tenantId);
        const { key } = await seed.key(deviceId);
        assert.equal((await connect(deviceId, key, nextPeer(), rejecting)).json().result, 'allow');
        await connectedEvent(deviceId, Date.now());
        if (emqxSays === 'disconnected') {
          // A persistent session whose client is away: EMQX knows the client id, not connected.
          await emqx.connect(deviceId, { persistent: true });
          emqx.disconnect(deviceId);
        }
        assert.equal((await connect(deviceId, key, nextPeer(), rejecting)).json().result, 'allow', emqxSays);
        const state = await sessions.get(deviceId);
        assert.equal(state?.connected, false);
        assert.equal(state?.reason, 'stale');
      }
    });

    it('lets only one of two concurrent CONNECTs through', async () => {
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      assert.equal((await connect(deviceId, key, nextPeer(), rejecting)).json().result, 'allow');
      await connectedEvent(deviceId, Date.now());
      await sessions.markStale(deviceId, (await sessions.get(deviceId))?.connectedAt ?? 0, Date.now());
      const results = await Promise.all([connect(deviceId, key, nextPeer(), rejecting), connect(deviceId, key, nextPeer(), rejecting)]);
      assert.deepEqual(results.map((r) => r.json().result).sort(), ['allow', 'deny']);
    });

    it('answers ignore when EMQX cannot confirm a session, never allow', async () => {
      const deviceId = await seed.device(tenantId);
      const { key } = await seed.key(deviceId);
      assert.equal((await connect(deviceId, key, nextPeer(), rejecting)).json().result, 'allow');
      await connectedEvent(deviceId, Date.now());
      emqx.failWith(500);
      try {
        assert.deepEqual((await connect(deviceId, key, nextPeer(), rejecting)).json(), { result: 'ignore' });
      } finally {
        emqx.failWith(null);
      }
    });
  });

  describe('authz (docs/emqx-contract.md §B)', () => {
    it('allows exactly own telemetry publish and own commands subscribe', async () => {
      const deviceId = await seed.device(tenantId);
      const other = await seed.device(tenantId);
      const ask = (topic: string, action: string, clientid = deviceId, username = clientid) =>
        authz({ clientid, username, topic, action, qos: '1', retain: 'false' });
      const allowed = [
        [`devices/${deviceId}/telemetry`, 'publish'],
        [`devices/${deviceId}/commands`, 'subscribe'],
      ];
      for (const [topic, action] of allowed) {
        const response = await ask(topic!, action!);
        assert.equal(response.statusCode, 200);
        assert.deepEqual(response.json(), { result: 'allow' }, `${action} ${topic}`);
      }
      const denied: [string, string, string?, string?][] = [
        [`devices/${deviceId}/telemetry`, 'subscribe'],
        [`devices/${deviceId}/commands`, 'publish'],
        [`devices/${other}/telemetry`, 'publish'],
        [`devices/${other}/commands`, 'subscribe'],
        ['devices/+/commands', 'subscribe'],
        [`devices/${deviceId}/#`, 'subscribe'],
        ['#', 'subscribe'],
        ['$SYS/brokers', 'subscribe'],
        [`$share/g/devices/${deviceId}/commands/x`, 'subscribe'],
        [`devices/${deviceId}/telemetry`, 'all'],
        [`devices/${deviceId}/telemetry`, 'publish', other, deviceId],
        [`devices/${deviceId}/telemetry`, 'publish', deviceId, other],
        [`devices/${randomUUID()}/telemetry`, 'publish'],
      ];
      for (const [topic, action, clientid, username] of denied) {
        const response = await ask(topic, action, clientid ?? deviceId, username ?? clientid ?? deviceId);
        assert.equal(response.statusCode, 200);
        assert.deepEqual(response.json(), { result: 'deny' }, `${action} ${topic} as ${clientid ?? 'self'}`);
      }
      const ghost = randomUUID();
      assert.deepEqual((await ask(`devices/${ghost}/telemetry`, 'publish', ghost)).json(), { result: 'deny' });

      // Every answer is counted, whether it came from memory or after a lookup.
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      const count = (action: string, result: string) =>
        Number(new RegExp(`devicelink_authz_total\\{action="${action}",result="${result}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
      assert.ok(count('publish', 'allow') >= 1);
      assert.ok(count('subscribe', 'allow') >= 1);
      assert.ok(count('publish', 'deny') >= 6);
      assert.ok(count('other', 'deny') >= 1);
      assert.match(metrics, /devicelink_http_requests_total\{route="\/emqx\/authz",method="POST",status="200"\} \d+/);
    });

    it('denies a device once it is disabled', async () => {
      const deviceId = await seed.device(tenantId);
      const topic = `devices/${deviceId}/telemetry`;
      assert.equal((await authz({ clientid: deviceId, username: deviceId, topic, action: 'publish' })).json().result, 'allow');
      await seed.query('UPDATE devices SET disabled = true WHERE id = $1', [deviceId]);
      await publishChange(ctx, { kind: 'device_disabled', device_id: deviceId, tenant_id: tenantId });
      await waitFor(async () => (await authz({ clientid: deviceId, username: deviceId, topic, action: 'publish' })).json().result === 'deny');
    });
  });

  async function verifyCount(): Promise<number> {
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    return Number(/devicelink_argon2_verify_duration_seconds_count (\d+)/.exec(metrics)?.[1] ?? 0);
  }
});
