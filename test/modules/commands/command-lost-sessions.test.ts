import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { createCommandRepository } from '../../../src/modules/commands/command-repository.js';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createCommand, eventsTo, newCommand, waitForCommand, type CommandBody } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import type { EmqxSim, ServiceTransport } from '../../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';
import { waitFor } from '../../helpers/wait.js';

/**
 * What EMQX does without telling: a clean start discards the session and the
 * commands it held; a publish to a device nobody subscribes to is answered
 * 202 only after its events; a device may subscribe through a shared
 * subscription.
 */
describe('commands when EMQX loses or has not taken them', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let app: FastifyInstance;
  let root: AdminClient;
  /** Events held back this long before they reach the service (by event name). */
  const delays = new Map<string, number>();

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_POLL_INTERVAL_MS: '100', EMQX_API_TIMEOUT_MS: '2000' });
    app = await ctx.app();
    const direct = eventsTo(app);
    const delayed: ServiceTransport = async (request, signal) => {
      const name = (JSON.parse(String(request.body ?? '{}')) as { event?: string }).event ?? '';
      const delay = delays.get(name);
      if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
      return direct(request, signal);
    };
    emqx.sendEventsTo(delayed);
    root = adminClient(app);
    assert.equal((await root.post('/v1/tenants', { id: 'fleet', name: 'Fleet' })).statusCode, 201);
  });
  beforeEach(() => {
    emqx.deliveryPlan({});
    delays.clear();
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  const newDevice = async () => (await root.post('/v1/tenants/fleet/devices', { name: 'meter' })).json<{ id: string }>().id;
  const topicOf = (device: string) => `devices/${device}/commands`;
  const send = async (device: string, body: object = { name: 'reboot' }) => {
    const response = await createCommand(app, device, body);
    assert.equal(response.statusCode, 202, response.body);
    return response.json<CommandBody>();
  };
  const publishesTo = (device: string) => emqx.published.filter((p) => p.topic === topicOf(device));

  it('a command delivered to a session the device then discards (clean start) is sent again and acked', async () => {
    const device = await newDevice();
    // The device gets the command and does not acknowledge it…
    await emqx.subscribe(device, topicOf(device), { acks: false });
    const command = await send(device);
    await waitForCommand(root, device, command.id, 'delivered');
    // …then comes back with a clean start: EMQX discards the session and the message, and says nothing of it.
    await emqx.connect(device, { acks: true });
    const requeued = await waitForCommand(root, device, command.id, (c) => c.state === 'queued' || c.state === 'acked');
    assert.equal(requeued.reason, 'session_lost');
    await emqx.subscribe(device, topicOf(device));
    const acked = await waitForCommand(root, device, command.id, 'acked');
    const published = publishesTo(device).filter((p) => p.status === 200);
    assert.equal(published.length, 2, 'sent once more: the device dedupes by command_id');
    assert.equal(acked.emqx_message_id, published[1]?.id, 'the message that was acked is the new one');
    const cancel = await root.post(`/v1/devices/${device}/commands/${command.id}/cancel`);
    assert.equal(cancel.statusCode, 409);
  });

  it('a device that resumes its persistent session keeps its commands where they are', async () => {
    const device = await newDevice();
    await emqx.subscribe(device, topicOf(device), { persistent: true, acks: false });
    const command = await send(device);
    await waitForCommand(root, device, command.id, 'delivered');
    emqx.disconnect(device);
    await emqx.connect(device, { persistent: true });
    await emqx.settle();
    assert.equal((await waitForCommand(root, device, command.id, 'delivered')).reason, null);
    assert.equal(publishesTo(device).length, 1);
  });

  it('cancel of a command whose publish is under way to an offline device waits for the 202, then cancels', async () => {
    const device = await newDevice();
    // The 202 comes only after EMQX delivered the publish's events, and those take a while.
    emqx.deliveryPlan({ beforeAnswer: true });
    delays.set('message.dropped', 600);
    const command = await send(device);
    await waitFor(async () => publishesTo(device).length === 1, 5000);
    const cancel = await root.post(`/v1/devices/${device}/commands/${command.id}/cancel`);
    assert.equal(cancel.statusCode, 200, cancel.body);
    assert.equal(cancel.json<CommandBody>().state, 'canceled');
    assert.equal(publishesTo(device)[0]?.status, 202);
  });

  it('a shared subscription of its command topic is the device subscribing: what waited is sent', async () => {
    const device = await newDevice();
    const command = await send(device);
    await waitForCommand(root, device, command.id, (c) => c.last_error === 'no_subscriber');
    await emqx.subscribe(device, `$share/g1/${topicOf(device)}`);
    await waitForCommand(root, device, command.id, 'acked');
  });
});

describe('commands claimed together go out in one bulk publish', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let app: FastifyInstance;
  let root: AdminClient;

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_POLL_INTERVAL_MS: '100' });
    app = await ctx.app();
    emqx.sendEventsTo(eventsTo(app));
    root = adminClient(app);
    assert.equal((await root.post('/v1/tenants', { id: 'bulk', name: 'Bulk' })).statusCode, 201);
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  it('each message of a partial answer (200, 202, 503) is handled on its own', async () => {
    const devices: string[] = [];
    for (let i = 0; i < 3; i++) devices.push((await root.post('/v1/tenants/bulk/devices', { name: `d${i}` })).json<{ id: string }>().id);
    const [failing, online, offline] = devices as [string, string, string];
    await emqx.subscribe(failing, `devices/${failing}/commands`);
    await emqx.subscribe(online, `devices/${online}/commands`);
    // The first message fails to dispatch.
    emqx.failNextPublishes(503);
    // Created in one transaction, so that one claim takes all three.
    const commands = createCommandRepository();
    const pool = new pg.Pool({ connectionString: ctx.db.url, max: 1 });
    const ids: string[] = [];
    try {
      await pool.query('BEGIN');
      for (const device of devices) {
        const id = randomUUID();
        ids.push(id);
        await commands.create(pool, newCommand(device, { id, tenantId: 'bulk', name: 'together', ttlS: 600, maxUnfinished: 10 }));
      }
      await pool.query('COMMIT');
    } finally {
      await pool.end();
    }
    const [first, second, third] = ids as [string, string, string];
    await waitForCommand(root, online, second, 'acked');
    const waiting = await waitForCommand(root, offline, third, (c) => c.last_error === 'no_subscriber');
    assert.equal(waiting.state, 'queued');
    const retried = await waitForCommand(root, failing, first, (c) => c.last_error === 'status_503' || c.state === 'acked');
    assert.equal(retried.attempts >= 1, true);
    await waitForCommand(root, failing, first, 'acked', 10_000);
    const together = emqx.published.filter((p) => p.bulk && devices.some((device) => p.topic === `devices/${device}/commands`)).slice(0, 3);
    assert.deepEqual(
      together.map((p) => p.status),
      [503, 200, 202],
      'one bulk call, answered item by item',
    );
  });
});
