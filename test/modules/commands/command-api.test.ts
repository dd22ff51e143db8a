import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, logCapture, type AdminClient } from '../../helpers/admin.js';
import { createCommand, eventsTo, waitForCommand, type CommandBody } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';

const MAX_PENDING = 3;

describe('the command API', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let app: FastifyInstance;
  let root: AdminClient;
  let device: string;
  let otherTenantDevice: string;
  let scopedToken: string;
  const logs = logCapture();

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_MAX_PENDING_PER_DEVICE: String(MAX_PENDING), COMMANDS_POLL_INTERVAL_MS: '100', LOG_LEVEL: 'info' });
    app = await ctx.app({ logStream: logs.stream });
    emqx.sendEventsTo(eventsTo(app));
    root = adminClient(app);
    assert.equal((await root.post('/v1/tenants', { id: 'acme', name: 'Acme' })).statusCode, 201);
    assert.equal((await root.post('/v1/tenants', { id: 'globex', name: 'Globex' })).statusCode, 201);
    device = (await root.post('/v1/tenants/acme/devices', { name: 'boiler' })).json().id;
    otherTenantDevice = (await root.post('/v1/tenants/globex/devices', { name: 'rival' })).json().id;
    scopedToken = (await root.post('/v1/admin-tokens', { label: 'globex ops', tenant_id: 'globex' })).json().token;
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  /**
   * Cancels once the dispatcher has tried the command and EMQX answered 202:
   * while that publish is under way a cancel is 409, as the command may be reaching EMQX.
   */
  const cancel = async (deviceId: string, commandId: string) => {
    await waitForCommand(root, deviceId, commandId, (c) => c.last_error === 'no_subscriber' || c.state !== 'queued');
    return root.post(`/v1/devices/${deviceId}/commands/${commandId}/cancel`);
  };

  /** A device of its own per test: the pending limit counts per device. */
  const newDevice = async (options: { disabled?: boolean } = {}) => (await root.post('/v1/tenants/acme/devices', { name: 'd', ...options })).json<{ id: string }>().id;

  it('creates a queued command and answers 202 with it; nobody subscribed, it stays queued', async () => {
    const response = await createCommand(app, device, { name: 'reboot', params: { delay_s: 5 }, ttl_s: 120 });
    assert.equal(response.statusCode, 202, response.body);
    const command = response.json<CommandBody>();
    assert.equal(command.device_id, device);
    assert.equal(command.tenant_id, 'acme');
    assert.equal(command.name, 'reboot');
    assert.deepEqual(command.params, { delay_s: 5 });
    assert.equal(command.state, 'queued');
    assert.equal(command.ttl_s, 120);
    assert.equal(Date.parse(command.expires_at) - Date.parse(command.created_at), 120_000);
    assert.equal(command.response_timeout_s, null, 'no reply is expected while replies are off');
    assert.equal(command.source, 'api');

    // EMQX answers 202 (no subscriber): still queued, waiting for the device.
    const waiting = await waitForCommand(root, device, command.id, (c) => c.last_error === 'no_subscriber');
    assert.equal(waiting.state, 'queued');
    assert.equal(waiting.emqx_message_id, null);
    const defaults = (await createCommand(app, device, { name: 'ping' })).json<CommandBody>();
    assert.equal(defaults.ttl_s, 3600);
    assert.deepEqual(defaults.params, {});
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^devicelink_commands_queue_depth 2$/m);
    assert.match(metrics, /^devicelink_commands_unfinished\{state="queued"\} 2$/m);
    assert.match(metrics, /^devicelink_commands_transitions_total\{state="queued"\} 2$/m);
    assert.match(metrics, /^devicelink_commands_publish_no_subscriber_total [1-9]/m);
  });

  it('refuses bad input with a 400 naming the field', async () => {
    const cases: Array<[object, RegExp]> = [
      [{}, /^body\.name: /],
      [{ name: '' }, /^body\.name: must be 1-64 characters/],
      [{ name: 'a'.repeat(65) }, /^body\.name: /],
      [{ name: 'has space' }, /^body\.name: /],
      [{ name: 'ok', params: [1, 2] }, /^body\.params: /],
      [{ name: 'ok', params: 'text' }, /^body\.params: /],
      [{ name: 'ok', params: { blob: 'x'.repeat(64 * 1024) } }, /^body\.params: must be at most 64 KiB/],
      [{ name: 'ok', ttl_s: 9 }, /^body\.ttl_s: /],
      [{ name: 'ok', ttl_s: 604_801 }, /^body\.ttl_s: /],
      [{ name: 'ok', ttl_s: 1.5 }, /^body\.ttl_s: /],
      [{ name: 'ok', extra: true }, /^body: /],
      [{ name: 'ok', response_timeout_s: 30 }, /^body\.response_timeout_s: command replies are not enabled/],
    ];
    for (const [body, message] of cases) {
      const response = await createCommand(app, device, body);
      assert.equal(response.statusCode, 400, JSON.stringify(body).slice(0, 80));
      assert.match(response.json<{ message: string }>().message, message, JSON.stringify(body).slice(0, 80));
    }
    assert.match((await createCommand(app, 'not-a-uuid', { name: 'x' })).json<{ message: string }>().message, /^params\.deviceId: must be a UUID/);
    const badKey = await createCommand(app, device, { name: 'x' }, { idempotencyKey: 'é' });
    assert.equal(badKey.statusCode, 400);
    assert.match(badKey.json<{ message: string }>().message, /^headers\.idempotency-key: /);
    assert.equal((await root.get(`/v1/devices/${device}/commands?state=lost`)).statusCode, 400);
    assert.equal((await root.get(`/v1/devices/${device}/commands/not-a-uuid`)).statusCode, 400);
    // Exactly 64 KiB of JSON is allowed.
    const exact = { blob: 'x'.repeat(64 * 1024 - '{"blob":""}'.length) };
    assert.equal((await createCommand(app, await newDevice(), { name: 'big', params: exact })).statusCode, 202);
  });

  it('returns the same command for a retried create with the same Idempotency-Key, 409 for a different body', async () => {
    const target = await newDevice();
    const first = await createCommand(app, target, { name: 'set', params: { a: 1, b: { c: 2 } } }, { idempotencyKey: 'req-42' });
    assert.equal(first.statusCode, 202);
    // Same request, keys in another order: the same command.
    const again = await createCommand(app, target, { params: { b: { c: 2 }, a: 1 }, name: 'set', ttl_s: 3600 }, { idempotencyKey: 'req-42' });
    assert.equal(again.statusCode, 202);
    assert.equal(again.json<CommandBody>().id, first.json<CommandBody>().id);
    const different = await createCommand(app, target, { name: 'set', params: { a: 2 } }, { idempotencyKey: 'req-42' });
    assert.equal(different.statusCode, 409);
    assert.equal(different.json<{ code: string }>().code, 'idempotency_key_reused');
    // Keys are per device; no key means a new command every time.
    assert.notEqual((await createCommand(app, await newDevice(), { name: 'set', params: { a: 1, b: { c: 2 } } }, { idempotencyKey: 'req-42' })).json<CommandBody>().id, first.json<CommandBody>().id);
    const listed = await root.get(`/v1/devices/${target}/commands`);
    assert.equal(listed.json<{ items: CommandBody[] }>().items.length, 1);
  });

  it('concurrent creates with one key make one command', async () => {
    const target = await newDevice();
    const answers = await Promise.all(Array.from({ length: 8 }, () => createCommand(app, target, { name: 'once' }, { idempotencyKey: 'burst' })));
    assert.deepEqual(new Set(answers.map((a) => a.statusCode)), new Set([202]));
    assert.equal(new Set(answers.map((a) => a.json<CommandBody>().id)).size, 1);
  });

  it(`concurrent creates never pass the limit of ${MAX_PENDING} unfinished commands; each one made is audited once`, async () => {
    const target = await newDevice();
    const answers = await Promise.all(Array.from({ length: 4 * MAX_PENDING }, (_, i) => createCommand(app, target, { name: `burst${i}` })));
    const made = answers.filter((answer) => answer.statusCode === 202).map((answer) => answer.json<CommandBody>().id);
    assert.equal(made.length, MAX_PENDING, answers.map((answer) => answer.statusCode).join(' '));
    assert.ok(answers.every((answer) => answer.statusCode === 202 || answer.json<{ code: string }>().code === 'too_many_pending_commands'));
    const audit = await root.get('/v1/audit?tenant_id=acme&object_type=command&limit=100');
    const entries = audit.json<{ items: { action: string; object_id: string; details: { device_id?: string } }[] }>().items;
    const audited = entries.filter((entry) => entry.action === 'command.create' && entry.details.device_id === target).map((entry) => entry.object_id);
    assert.deepEqual(audited.sort(), [...made].sort());
  });

  it(`answers 429 beyond ${MAX_PENDING} unfinished commands of a device, and a retried create still gets its command`, async () => {
    const target = await newDevice();
    const created: CommandBody[] = [];
    for (let i = 0; i < MAX_PENDING; i++) {
      const response = await createCommand(app, target, { name: `c${i}` }, { idempotencyKey: `k${i}` });
      assert.equal(response.statusCode, 202);
      created.push(response.json<CommandBody>());
    }
    const over = await createCommand(app, target, { name: 'one-too-many' });
    assert.equal(over.statusCode, 429);
    assert.equal(over.json<{ code: string }>().code, 'too_many_pending_commands');
    assert.equal((await createCommand(app, target, { name: 'c0' }, { idempotencyKey: 'k0' })).json<CommandBody>().id, created[0]?.id);
    // A finished command frees its place.
    assert.equal((await cancel(target, created[0]?.id ?? '')).statusCode, 200);
    assert.equal((await createCommand(app, target, { name: 'fits-again' })).statusCode, 202);
  });

  it('refuses commands for a disabled device with 409', async () => {
    const disabled = await newDevice({ disabled: true });
    const response = await createCommand(app, disabled, { name: 'reboot' });
    assert.equal(response.statusCode, 409);
    assert.equal(response.json<{ code: string }>().code, 'device_disabled');
    assert.equal((await createCommand(app, randomUUID(), { name: 'reboot' })).statusCode, 404);
  });

  it('a tenant-scoped token can neither see nor command another tenant\'s device (404)', async () => {
    const own = (await createCommand(app, otherTenantDevice, { name: 'ok' }, { token: scopedToken })).json<CommandBody>();
    assert.equal(own.tenant_id, 'globex');
    const acmeCommand = (await createCommand(app, device, { name: 'secret-op' })).json<CommandBody>();
    const scoped = adminClient(app, scopedToken);
    const hidden = [
      await createCommand(app, device, { name: 'intrude' }, { token: scopedToken }),
      await scoped.get(`/v1/devices/${device}/commands`),
      await scoped.get(`/v1/devices/${device}/commands/${acmeCommand.id}`),
      await scoped.post(`/v1/devices/${device}/commands/${acmeCommand.id}/cancel`),
      // Another tenant's command under the caller's own device is not there either.
      await scoped.get(`/v1/devices/${otherTenantDevice}/commands/${acmeCommand.id}`),
      await scoped.post(`/v1/devices/${otherTenantDevice}/commands/${acmeCommand.id}/cancel`),
    ];
    for (const response of hidden) assert.equal(response.statusCode, 404, response.body);
    assert.equal((await root.get(`/v1/devices/${device}/commands/${acmeCommand.id}`)).json<CommandBody>().state, 'queued');
  });

  it('lists a device\'s commands in creation order, page by page, filtered by state', async () => {
    const target = await newDevice();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await createCommand(app, target, { name: `n${i}` })).json<CommandBody>().id);
    // Not the oldest of the device: it is not sent while the first waits, so it cancels at once.
    assert.equal((await root.post(`/v1/devices/${target}/commands/${ids[1]}/cancel`)).statusCode, 200);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { statusCode: number; json: <T>() => T } = await root.get(`/v1/devices/${target}/commands?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(page.statusCode, 200);
      const body = page.json<{ items: CommandBody[]; next_cursor: string | null }>();
      seen.push(...body.items.map((item) => item.id));
      cursor = body.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, ids);
    const canceled = (await root.get(`/v1/devices/${target}/commands?state=canceled`)).json<{ items: CommandBody[] }>();
    assert.deepEqual(canceled.items.map((item) => item.id), [ids[1]]);
    const queued = (await root.get(`/v1/devices/${target}/commands?state=queued`)).json<{ items: CommandBody[] }>();
    assert.deepEqual(queued.items.map((item) => item.id), [ids[0], ids[2]]);
    assert.equal((await root.get(`/v1/devices/${target}/commands?cursor=bogus`)).statusCode, 400);
  });

  it('cancels a queued command once; after it was handed to EMQX cancel is 409', async () => {
    const target = await newDevice();
    const queued = (await createCommand(app, target, { name: 'stop' })).json<CommandBody>();
    const canceled = await cancel(target, queued.id);
    assert.equal(canceled.statusCode, 200);
    assert.equal(canceled.json<CommandBody>().state, 'canceled');
    const twice = await root.post(`/v1/devices/${target}/commands/${queued.id}/cancel`);
    assert.equal(twice.statusCode, 409);
    assert.equal(twice.json<{ code: string }>().code, 'command_not_cancelable');

    await emqx.subscribe(target, `devices/${target}/commands`);
    const sent = (await createCommand(app, target, { name: 'start' })).json<CommandBody>();
    await waitForCommand(root, target, sent.id, 'acked');
    const late = await root.post(`/v1/devices/${target}/commands/${sent.id}/cancel`);
    assert.equal(late.statusCode, 409);
    assert.match(late.json<{ message: string }>().message, /it is acked/);
    assert.equal((await root.post(`/v1/devices/${target}/commands/${randomUUID()}/cancel`)).statusCode, 404);
  });

  it('audits creates and cancels with the command id and name, never its params', async () => {
    const target = await newDevice();
    const secretish = 'params-value-that-must-not-be-audited';
    const command = (await createCommand(app, target, { name: 'configure', params: { wifi: secretish } })).json<CommandBody>();
    assert.equal((await cancel(target, command.id)).statusCode, 200);
    const audit = await root.get(`/v1/audit?object_type=command&object_id=${command.id}`);
    assert.equal(audit.statusCode, 200);
    const entries = audit.json<{ items: Array<{ action: string; tenant_id: string; details: Record<string, unknown> }> }>().items;
    assert.deepEqual(entries.map((e) => e.action).sort(), ['command.cancel', 'command.create']);
    for (const entry of entries) {
      assert.equal(entry.tenant_id, 'acme');
      assert.deepEqual(entry.details, { device_id: target, name: 'configure' });
    }
    assert.ok(!audit.body.includes(secretish));
    assert.ok(!logs.text().includes(secretish), 'params never reach a log line');
  });
});
