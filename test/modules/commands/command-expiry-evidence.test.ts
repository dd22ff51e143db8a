import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Actor } from '../../../src/lib/actor.js';
import { createCommandRepository } from '../../../src/modules/commands/command-repository.js';
import { wireCommands } from '../../../src/wiring/commands.js';
import { wireTopics } from '../../../src/wiring/topics.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder } from '../../helpers/devices.js';

const ROOT: Actor = { tokenId: 'root', tenantId: null, requestId: 'expiry-evidence-test', sourceIp: '127.0.0.1' };

/**
 * Expiry the service decides itself against what EMQX may still do: a publish
 * in flight, a PUBACK after the expiry, an attempt that crashed after EMQX
 * took the command. The replicas' dispatchers are not running: the test
 * claims and answers as a dispatcher would, on a clock it moves.
 */
describe('command expiry leaves room for what EMQX may still do', () => {
  let ctx: TestContext;
  let pool: pg.Pool;
  let tenant: string;
  let now = Date.now();
  const clock = () => now;
  const commands = createCommandRepository();
  const replica = () => {
    const wiring = ctx.wiring({ clock });
    return wireCommands({ ...wiring, topics: wireTopics(wiring) });
  };
  let seeder: ReturnType<typeof createDeviceSeeder>;

  before(async () => {
    ctx = await createTestContext();
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 2 });
    seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    tenant = await seeder.tenant('expiry');
  });
  after(async () => {
    await seeder.close();
    await pool.end();
    await ctx.close();
  });

  const stateOf = async (id: string) =>
    (await pool.query<{ state: string; reason: string | null; possibly_sent: boolean }>('SELECT state, reason, possibly_sent FROM commands WHERE id = $1', [id])).rows[0];
  const ackEvent = (device: string, commandId: string) => ({
    event: 'message.acked',
    id: 'A1B2',
    clientid: device,
    topic: `devices/${device}/commands`,
    pub_props: { 'User-Property': { command_id: commandId } },
  });

  it('does not expire a command whose publish is in flight; it is acked when its answer and ack come', async () => {
    const service = replica();
    const device = await seeder.device(tenant);
    const { command } = await service.service.create(ROOT, device, { name: 'late', ttl_s: 10 }, null);
    // Claimed just before its expiry; the publish is under way past it.
    now += 9_500;
    const [claimed] = await commands.claim(pool, { leaseMs: 30_000, limit: 10, deviceId: device });
    assert.equal(claimed?.id, command.id);
    now += 1_000;
    assert.equal((await service.sweep()).expired, 0, 'the lease is running: the publish decides');
    const sent = await commands.transitionOne(pool, command.id, { event: 'published', reason: null, at: new Date(now), sets: { value: { sent_at: new Date(now) } } });
    assert.equal(sent?.state, 'sent');
    assert.equal((await service.sweep()).expired, 0, 'EMQX holds it: it gets the grace');
    const outcome = await service.handlers['message.acked']!(ackEvent(device, command.id));
    assert.equal(outcome.kind, 'handled');
    assert.equal((await stateOf(command.id))?.state, 'acked');
  });

  it('expires a delivered command only after the grace, and an ack after that expiry still wins', async () => {
    const service = replica();
    const device = await seeder.device(tenant);
    const { command } = await service.service.create(ROOT, device, { name: 'slow-ack', ttl_s: 10 }, null);
    await commands.claim(pool, { leaseMs: 30_000, limit: 10, deviceId: device });
    await commands.transitionOne(pool, command.id, { event: 'delivered', reason: null, at: new Date(now), sets: { first: { sent_at: new Date(now), delivered_at: new Date(now) } } });
    now += 11_000;
    assert.equal((await service.sweep()).expired, 0, 'past expires_at, within the grace: EMQX may still take the PUBACK');
    now += 60_000;
    assert.equal((await service.sweep()).expired, 1);
    assert.deepEqual(await stateOf(command.id), { state: 'expired', reason: 'not_acked', possibly_sent: true });
    // The device did acknowledge it: evidence wins over the service's own expiry.
    await service.handlers['message.acked']!(ackEvent(device, command.id));
    assert.equal((await stateOf(command.id))?.state, 'acked');
    const { rows } = await pool.query<{ state: string; previous_state: string | null }>(
      'SELECT state, previous_state FROM command_status_outbox WHERE command_id = $1 ORDER BY id',
      [command.id],
    );
    assert.deepEqual(
      rows.map((row) => `${row.previous_state ?? '-'}→${row.state}`),
      ['-→queued', 'queued→delivered', 'delivered→expired', 'expired→acked'],
    );
  });

  it('an expiry EMQX reported is final: a late ack does not undo it', async () => {
    const service = replica();
    const device = await seeder.device(tenant);
    const { command } = await service.service.create(ROOT, device, { name: 'dropped-expired', ttl_s: 10 }, null);
    await commands.transitionOne(pool, command.id, { event: 'expired_in_emqx', reason: 'expired_in_emqx', at: new Date(now) });
    await service.handlers['message.acked']!(ackEvent(device, command.id));
    assert.equal((await stateOf(command.id))?.state, 'expired');
  });

  it('an attempt that never got its answer (the replica died) leaves the command possibly sent: no cancel, and no second lease meanwhile', async () => {
    const service = replica();
    const device = await seeder.device(tenant);
    const { command } = await service.service.create(ROOT, device, { name: 'crash', ttl_s: 600 }, null);
    const [claimed] = await commands.claim(pool, { leaseMs: 200, limit: 10, deviceId: device });
    assert.equal(claimed?.possibly_sent, true, 'marked when claimed, before the publish');
    // Another replica, whatever its own clock says, cannot take the lease while it runs (Postgres' clock decides).
    now += 3_600_000;
    assert.deepEqual(await commands.claim(pool, { leaseMs: 30_000, limit: 10, deviceId: device }), []);
    now -= 3_600_000;
    // The replica dies between EMQX's 200 and writing `sent`: the lease runs out.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await assert.rejects(service.service.cancel(ROOT, device, command.id), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'command_not_cancelable');
      assert.match(error.message, /EMQX may have it/);
      return true;
    });
    assert.equal((await stateOf(command.id))?.state, 'queued');
    // A definite answer to the next attempt (202: nobody subscribed) does not clear what the first may have done.
    const [again] = await commands.claim(pool, { leaseMs: 30_000, limit: 10, deviceId: device });
    assert.equal(again?.was_possibly_sent, true);
    await commands.awaitSubscriber(pool, command.id, { attemptStartedAt: new Date(now), now: new Date(now), recheckMs: 60_000, wasPossiblySent: again.was_possibly_sent });
    assert.equal((await stateOf(command.id))?.possibly_sent, true);
  });
});
