import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import type { EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { adminClient, type AdminClient } from '../../helpers/admin.js';
import { createCommand, eventsTo, outboxDrained, statusRecords } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder } from '../../helpers/devices.js';
import { emqxEnv, startTestEmqx } from '../../helpers/emqx.js';

interface JobBody {
  id: string;
  state: string;
  reason: string | null;
  total: number;
  counts: Record<string, number> & Record<'scheduled' | 'queued' | 'sent' | 'delivered' | 'acked' | 'canceled' | 'failed', number>;
  failures: Record<string, number>;
}

/** Polls `read` until it returns a value. */
async function until<T>(read: () => Promise<T | null>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== null) return value;
    if (Date.now() > deadline) assert.fail(`not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((total, count) => total + count, 0);

/**
 * Command jobs on two replicas sharing Postgres, Redis and Kafka, one EMQX
 * simulation sending every delivery event twice, in random order, to either.
 */
describe('command jobs', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let first: FastifyInstance;
  let second: FastifyInstance;
  let admin: AdminClient;
  let pool: pg.Pool;
  let seeder: ReturnType<typeof createDeviceSeeder>;

  const jobOf = async (client: AdminClient, tenant: string, id: string) => {
    const response = await client.get(`/v1/tenants/${tenant}/command-jobs/${id}`);
    assert.equal(response.statusCode, 200, response.body);
    return response.json<JobBody>();
  };
  const devicesWith = async (tenant: string, count: number, labels: Record<string, string>) => {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = await seeder.device(tenant);
      await pool.query('UPDATE devices SET labels = $2 WHERE id = $1', [id, JSON.stringify(labels)]);
      ids.push(id);
    }
    return ids;
  };

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_POLL_INTERVAL_MS: '200', COMMANDS_MAX_PENDING_PER_DEVICE: '3' });
    seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    await seeder.tenant('acme');
    await seeder.tenant('globex');
    [first, second] = await Promise.all([ctx.app(), ctx.app()]);
    emqx.sendEventsTo(eventsTo(first, second));
    emqx.deliveryPlan({ beforeAnswer: 'sometimes', repeat: true, shuffle: true });
    admin = adminClient(first);
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 2 });
  });
  after(async () => {
    await seeder?.close();
    await pool?.end();
    await ctx.close();
    await emqx.close();
  });

  it('sends one command to every labelled device, each acked once, counts adding up to total all along, records carrying the job', async () => {
    const targets = await devicesWith('acme', 60, { site: 'berlin', ring: 'canary' });
    await devicesWith('acme', 5, { site: 'paris', ring: 'canary' });
    await devicesWith('globex', 5, { site: 'berlin', ring: 'canary' });
    for (const device of targets) await emqx.subscribe(device, `devices/${device}/commands`);

    const created = await admin.post('/v1/tenants/acme/command-jobs', {
      name: 'update-firmware',
      params: { version: '2.4.1' },
      target: { labels: { site: 'berlin', ring: 'canary' } },
      max_per_second: 100,
    });
    assert.equal(created.statusCode, 202, created.body);
    const job = created.json<JobBody>();
    assert.equal(job.total, 60);
    assert.equal(job.state, 'running');
    assert.equal(sum(job.counts), 60);

    // Either replica answers, while the commands move: every target is counted once.
    let seen = job;
    let reads = 0;
    while (seen.state === 'running') {
      seen = await jobOf(adminClient(reads++ % 2 === 0 ? first : second), 'acme', job.id);
      assert.equal(sum(seen.counts), 60, JSON.stringify(seen.counts));
      if (reads > 2000) assert.fail(`job still running: ${JSON.stringify(seen.counts)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(reads > 3, 'the job was seen while it ran');
    assert.equal(seen.state, 'completed');
    assert.equal(seen.counts.acked, 60, JSON.stringify(seen.counts));

    // One publish per device, made by one replica or the other, never both.
    const published = emqx.published.filter((message) => message.status === 200 && (message.body as { payload?: string }).payload?.includes('update-firmware'));
    const perTopic = new Map<string, number>();
    for (const message of published) perTopic.set(message.topic, (perTopic.get(message.topic) ?? 0) + 1);
    assert.equal(perTopic.size, 60);
    assert.deepEqual(new Set(perTopic.values()), new Set([1]));

    const listed = (await admin.get(`/v1/devices/${targets[0]}/commands`)).json().items as { job_id: string | null; source: string }[];
    assert.deepEqual(listed.map((command) => [command.job_id, command.source]), [[job.id, 'job']]);

    await outboxDrained(first);
    const records = (await statusRecords(ctx.config.kafka.topicPrefix, 'acme', 60 * 4)) as { job_id: string | null; state: string }[];
    assert.ok(records.every((record) => record.job_id === job.id));
    assert.equal(records.filter((record) => record.state === 'acked').length, 60);
  });

  it('counts a device at its pending limit, a disabled one and a deleted one as failed, with why, and makes no command for them', async () => {
    // The runner makes a job's commands in device id order, one a second here: the
    // devices disabled and deleted after the create come last, seconds after it.
    const ids = [await seeder.device('acme'), await seeder.device('acme'), await seeder.device('acme'), await seeder.device('acme')].sort();
    const [full, fine, disabled, gone] = ids;
    for (let i = 0; i < 3; i++) assert.equal((await createCommand(first, full as string, { name: 'fill' })).statusCode, 202);
    // Disabled and deleted after the job lists them, before their commands are made.
    const created = await admin.post('/v1/tenants/acme/command-jobs', { name: 'ping', target: { device_ids: [full, disabled, gone, fine] }, max_per_second: 1 });
    assert.equal(created.statusCode, 202, created.body);
    const job = created.json<JobBody>();
    await admin.patch(`/v1/devices/${disabled}`, { disabled: true });
    await admin.delete(`/v1/devices/${gone}`);

    const done = await until(async () => {
      const current = await jobOf(admin, 'acme', job.id);
      return current.counts.scheduled === 0 ? current : null;
    }, 15_000);
    assert.equal(done.total, 4);
    assert.deepEqual(done.failures, { pending_limit: 1, device_disabled: 1, device_deleted: 1 });
    assert.equal(done.counts.failed, 3);
    assert.equal(done.counts.queued, 1, 'the one device that could take it has it queued (not subscribed)');
    assert.equal(sum(done.counts), 4);
    const { rows } = await pool.query('SELECT device_id FROM commands WHERE job_id = $1', [job.id]);
    assert.deepEqual(rows.map((row) => row.device_id), [fine]);
  });

  it('cancel stops the job while it sends: what EMQX has not taken is canceled, no command is made after, counts still add up', async () => {
    const targets = await devicesWith('acme', 40, { site: 'oslo' });
    // Half subscribed (their commands go out), half not (theirs wait, queued).
    for (const device of targets.slice(0, 20)) await emqx.subscribe(device, `devices/${device}/commands`);
    const created = await admin.post('/v1/tenants/acme/command-jobs', { name: 'restart', target: { labels: { site: 'oslo' } }, max_per_second: 20 });
    const job = created.json<JobBody>();
    await until(async () => {
      const current = await jobOf(admin, 'acme', job.id);
      return current.counts.scheduled < 30 && current.counts.scheduled > 0 ? current : null;
    }, 10_000);

    const canceled = await admin.post(`/v1/tenants/acme/command-jobs/${job.id}/cancel`, {});
    assert.equal(canceled.statusCode, 200, canceled.body);
    const body = canceled.json<JobBody>();
    assert.equal(body.state, 'canceled');
    assert.equal(sum(body.counts), 40);
    assert.equal(body.counts.scheduled, 0);
    assert.equal(body.counts.queued, 0, JSON.stringify(body.counts));
    assert.ok(body.counts.canceled > 0);

    const { rows: before } = await pool.query('SELECT count(*)::int AS n FROM commands WHERE job_id = $1', [job.id]);
    await new Promise((resolve) => setTimeout(resolve, 600));
    const { rows: later } = await pool.query('SELECT count(*)::int AS n FROM commands WHERE job_id = $1', [job.id]);
    assert.equal(later[0].n, before[0].n, 'no command is made after the cancel');
    const final = await until(async () => {
      const current = await jobOf(admin, 'acme', job.id);
      return current.counts.sent + current.counts.delivered === 0 ? current : null;
    }, 10_000);
    assert.equal(final.counts.acked + final.counts.canceled, 40, JSON.stringify(final.counts));
    // Canceling again changes nothing.
    assert.deepEqual((await admin.post(`/v1/tenants/acme/command-jobs/${job.id}/cancel`, {})).json<JobBody>().counts, final.counts);
  });

  it('refuses a bad target before making anything, and shows a scoped token only its tenant\'s jobs', async () => {
    const own = await seeder.device('acme');
    const foreign = await seeder.device('globex');
    const before = (await admin.get('/v1/tenants/acme/command-jobs?limit=500')).json().items.length as number;

    const unknown = await admin.post('/v1/tenants/acme/command-jobs', { name: 'x', target: { device_ids: [own, foreign, randomUUID()] } });
    assert.equal(unknown.statusCode, 400);
    assert.match(unknown.json().message, /^body\.target\.device_ids: not devices of tenant acme: /);
    assert.ok(unknown.json().message.includes(foreign));
    const twice = await admin.post('/v1/tenants/acme/command-jobs', { name: 'x', target: { device_ids: [own, own] } });
    assert.equal(twice.statusCode, 400);
    assert.match(twice.json().message, /given more than once/);
    const empty = await admin.post('/v1/tenants/acme/command-jobs', { name: 'x', target: {} });
    assert.equal(empty.statusCode, 400);
    assert.equal((await admin.get('/v1/tenants/acme/command-jobs?limit=500')).json().items.length, before, 'nothing was created');

    const scoped = adminClient(first, (await admin.post('/v1/admin-tokens', { label: 'globex ops', tenant_id: 'globex' })).json().token);
    const globexJob = (await scoped.post('/v1/tenants/globex/command-jobs', { name: 'x', target: { device_ids: [foreign] } })).json<JobBody>();
    assert.equal(globexJob.total, 1);
    const acmeJob = (await admin.get('/v1/tenants/acme/command-jobs?limit=1')).json().items[0] as JobBody;
    assert.equal((await scoped.get(`/v1/tenants/acme/command-jobs/${acmeJob.id}`)).statusCode, 404);
    assert.equal((await scoped.get('/v1/tenants/acme/command-jobs')).statusCode, 404);
    assert.equal((await scoped.post(`/v1/tenants/acme/command-jobs/${acmeJob.id}/cancel`, {})).statusCode, 404);
    assert.equal((await scoped.post('/v1/tenants/acme/command-jobs', { name: 'x', target: { device_ids: [own] } })).statusCode, 404);
    assert.equal((await scoped.get(`/v1/tenants/globex/command-jobs/${globexJob.id}`)).statusCode, 200);
    assert.equal((await admin.get(`/v1/tenants/globex/command-jobs/${acmeJob.id}`)).statusCode, 404, "another tenant's path does not find the job");
  });
});
