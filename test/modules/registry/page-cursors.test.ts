import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createCommand } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';

/** A cursor as this API writes them: base64url of the text. */
const cursorOf = (text: string) => Buffer.from(text, 'utf8').toString('base64url');

interface Listing {
  readonly name: string;
  readonly url: string;
  /** An id of one of its rows: a forged cursor with it fails on its number alone. */
  readonly id: string;
}

describe('page cursors', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let root: AdminClient;
  let tenants: Listing;
  let devices: Listing;
  let keys: Listing;
  let commands: Listing;
  let adminTokens: Listing;
  let audit: Listing;
  /** A next_cursor each listing issued, by listing name. */
  const issued = new Map<string, string>();

  before(async () => {
    ctx = await createTestContext();
    // A frozen clock: the rows of each listing share one created_at, so pages are ordered by id too.
    const now = Date.parse('2026-11-24T12:00:00.000Z');
    app = await ctx.app({ clock: () => now });
    root = adminClient(app);
    for (const id of ['acme', 'globex', 'initech']) assert.equal((await root.post('/v1/tenants', { id, name: id })).statusCode, 201);
    const deviceIds: string[] = [];
    for (let i = 0; i < 3; i++) deviceIds.push((await root.post('/v1/tenants/acme/devices', { name: `d${i}` })).json<{ id: string }>().id);
    const device = deviceIds[0] as string;
    const keyIds: string[] = [];
    for (let i = 0; i < 3; i++) keyIds.push((await root.post(`/v1/devices/${device}/keys`)).json<{ id: string }>().id);
    const commandIds: string[] = [];
    for (let i = 0; i < 3; i++) commandIds.push((await createCommand(app, device, { name: `c${i}` })).json<{ id: string }>().id);
    const tokenIds: string[] = [];
    for (let i = 0; i < 3; i++) tokenIds.push((await root.post('/v1/admin-tokens', { label: `t${i}` })).json<{ id: string }>().id);
    const auditIds = (await root.get('/v1/audit?limit=3')).json<{ items: { id: string }[] }>().items.map((entry) => entry.id);

    tenants = { name: 'tenants', url: '/v1/tenants', id: 'acme' };
    devices = { name: 'devices', url: '/v1/tenants/acme/devices', id: device };
    keys = { name: 'keys', url: `/v1/devices/${device}/keys`, id: keyIds[0] as string };
    commands = { name: 'commands', url: `/v1/devices/${device}/commands`, id: commandIds[0] as string };
    adminTokens = { name: 'admin tokens', url: '/v1/admin-tokens', id: tokenIds[0] as string };
    audit = { name: 'audit', url: '/v1/audit', id: auditIds[0] as string };
    for (const listing of [tenants, devices, keys, commands, adminTokens, audit]) {
      const page = await root.get(`${listing.url}?limit=1`);
      assert.equal(page.statusCode, 200, page.body);
      issued.set(listing.name, page.json<{ next_cursor: string }>().next_cursor);
    }
  });
  after(() => ctx.close());

  /** Asserts the usual 400 for a cursor, naming querystring.cursor. */
  async function assertRefused(listing: Listing, cursor: string, what: string) {
    const response = await root.get(`${listing.url}?cursor=${encodeURIComponent(cursor)}`);
    assert.equal(response.statusCode, 400, `${listing.name}, ${what}: ${response.body}`);
    const body = response.json<Record<string, unknown>>();
    assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'message', 'requestId', 'statusCode'], what);
    assert.equal(body.statusCode, 400);
    assert.equal(body.error, 'Bad Request');
    assert.equal(body.code, 'validation_failed', what);
    assert.match(String(body.message), /^querystring\.cursor: /, what);
  }

  /** Pages through with limit 1 from the start and compares with the whole listing. */
  async function assertPagesThrough(listing: Listing) {
    const whole = (await root.get(`${listing.url}?limit=500`)).json<{ items: { id: string }[] }>().items.map((item) => item.id);
    assert.ok(whole.length >= 3, `${listing.name} has rows to page through`);
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const response = await root.get(`${listing.url}?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(response.statusCode, 200, `${listing.name}: ${response.body}`);
      const body = response.json<{ items: { id: string }[]; next_cursor: string | null }>();
      paged.push(...body.items.map((item) => item.id));
      cursor = body.next_cursor;
    } while (cursor);
    assert.deepEqual(paged, whole, listing.name);
  }

  /** Forged cursors every keyset listing (created_at, id) refuses, whatever its ids look like. */
  const forgedNumbers = (id: string): [string, string][] => [
    [cursorOf(`${'9'.repeat(20)}|${id}`), 'twenty digits'],
    [cursorOf(`9223372036854775808|${id}`), 'one past bigint'],
    [cursorOf(`-210866803200000001|${id}`), 'before the earliest timestamptz'],
    [cursorOf(`0001700000000000000|${id}`), 'leading zeros'],
    [cursorOf(`1.5|${id}`), 'a fraction'],
    [cursorOf(`1|${id}|2`), 'three fields'],
    [cursorOf(`|${id}`), 'no number'],
    [cursorOf('1|'), 'no id'],
  ];
  const garbage: [string, string][] = [
    ['@@ not base64 @@', 'not base64url'],
    ['bm9wZQ', 'base64url of text without a separator'],
    [`${cursorOf('1|acme')}==`, 'padded'],
    [`${cursorOf('1|acme')}.`, 'a character base64url does not have'],
    ['\u2603', 'not ASCII'],
  ];

  it('refuses a forged tenants cursor with 400 naming cursor; a real one pages', async () => {
    await assertRefused(tenants, cursorOf('1|Not A Tenant'), 'an id no tenant can have');
    await assertRefused(tenants, issued.get('audit') as string, 'an audit cursor');
    for (const [cursor, what] of [...forgedNumbers('acme'), ...garbage]) await assertRefused(tenants, cursor, what);
    await assertPagesThrough(tenants);
  });

  it('refuses a forged devices cursor with 400 naming cursor; a real one pages', async () => {
    await assertRefused(devices, cursorOf('1|x'), '1|x');
    await assertRefused(devices, cursorOf(`1|${devices.id.toUpperCase()}`), 'an upper-case UUID');
    await assertRefused(devices, issued.get('tenants') as string, 'a tenants cursor');
    await assertRefused(devices, issued.get('keys') as string, 'a keys cursor');
    for (const [cursor, what] of [...forgedNumbers(devices.id), ...garbage]) await assertRefused(devices, cursor, what);
    await assertPagesThrough(devices);
  });

  it('refuses a forged commands cursor with 400 naming cursor; a real one pages', async () => {
    await assertRefused(commands, cursorOf('1|x'), '1|x');
    await assertRefused(commands, issued.get('tenants') as string, 'a tenants cursor');
    await assertRefused(commands, issued.get('admin tokens') as string, 'an admin tokens cursor');
    for (const [cursor, what] of [...forgedNumbers(commands.id), ...garbage]) await assertRefused(commands, cursor, what);
    await assertPagesThrough(commands);
  });

  it('refuses a forged keys cursor with 400 naming cursor; a real one pages', async () => {
    for (const [cursor, what] of [...forgedNumbers(keys.id), ...garbage]) await assertRefused(keys, cursor, what);
    await assertPagesThrough(keys);
  });

  it('refuses a keys cursor whose id is no key id', async () => {
    await assertRefused(keys, cursorOf('1|x'), '1|x');
    await assertRefused(keys, issued.get('devices') as string, 'a devices cursor');
    await assertRefused(keys, issued.get('tenants') as string, 'a tenants cursor');
  });

  it('refuses a forged admin tokens cursor with 400 naming cursor; a real one pages', async () => {
    await assertRefused(adminTokens, cursorOf('1|x'), '1|x');
    await assertRefused(adminTokens, cursorOf('1|ABCDEFGHIJKL'), 'upper case');
    await assertRefused(adminTokens, issued.get('devices') as string, 'a devices cursor');
    await assertRefused(adminTokens, issued.get('tenants') as string, 'a tenants cursor');
    for (const [cursor, what] of [...forgedNumbers(adminTokens.id), ...garbage]) await assertRefused(adminTokens, cursor, what);
    await assertPagesThrough(adminTokens);
  });

  it('refuses a forged audit cursor with 400 naming cursor; a real one pages', async () => {
    for (const [cursor, what] of garbage) await assertRefused(audit, cursor, what);
    const cases: [string, string][] = [
      [cursorOf('audit|x'), 'audit|x'],
      [cursorOf('1|x'), '1|x'],
      [cursorOf(`audit|${'9'.repeat(19)}`), 'nineteen digits, past bigint'],
      [cursorOf('audit|9223372036854775808'), 'one past bigint'],
      [cursorOf('audit|0'), 'zero'],
      [cursorOf('audit|007'), 'leading zeros'],
      [issued.get('devices') as string, 'a devices cursor'],
      [issued.get('tenants') as string, 'a tenants cursor'],
    ];
    for (const [cursor, what] of cases) await assertRefused(audit, cursor, what);
    await assertPagesThrough(audit);
  });

  it('takes any microsecond Postgres can hold: the earliest timestamptz and the largest bigint', async () => {
    const earliest = await root.get(`${devices.url}?limit=500&cursor=${cursorOf(`-210866803200000000|${devices.id}`)}`);
    assert.equal(earliest.statusCode, 200, earliest.body);
    assert.equal(earliest.json<{ items: unknown[] }>().items.length, 3);
    const latest = await root.get(`${devices.url}?cursor=${cursorOf(`9223372036854775807|${devices.id}`)}`);
    assert.equal(latest.statusCode, 200, latest.body);
    assert.deepEqual(latest.json(), { items: [], next_cursor: null });
    const lastAudit = await root.get(`${audit.url}?cursor=${cursorOf('audit|9223372036854775807')}&limit=500`);
    assert.equal(lastAudit.statusCode, 200, lastAudit.body);
  });
});
