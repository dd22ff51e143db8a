import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Actor } from '../../../src/lib/actor.js';
import { createAuditRepository } from '../../../src/modules/audit/audit-repository.js';
import { createCommandRepository } from '../../../src/modules/commands/command-repository.js';
import { createCommandService } from '../../../src/modules/commands/command-service.js';
import { createDeviceRepository } from '../../../src/modules/devices/device-repository.js';
import { newCommand } from '../../helpers/commands.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder } from '../../helpers/devices.js';

const ROOT: Actor = { tokenId: 'root', tenantId: null, requestId: 'create-batch-test', sourceIp: '127.0.0.1' };
const MAX_PENDING = 4;

/** The creates of one turn of the event loop: one statement per round of distinct devices, each create judged as if alone. */
describe('creates made together', () => {
  let ctx: TestContext;
  let pool: pg.Pool;
  let statements: string[];
  let service: ReturnType<typeof createCommandService>;
  let tenant: string;
  const newDevices = async (count: number, options: { disabled?: boolean } = {}) => {
    const seeder = createDeviceSeeder(ctx.db.url, { topicPrefix: ctx.config.kafka.topicPrefix });
    try {
      tenant ??= await seeder.tenant();
      const devices: string[] = [];
      for (let i = 0; i < count; i++) devices.push(await seeder.device(tenant, options));
      return devices;
    } finally {
      await seeder.close();
    }
  };

  before(async () => {
    ctx = await createTestContext();
    pool = new pg.Pool({ connectionString: ctx.db.url, max: 4 });
    statements = [];
    // Every statement the service sends, by its first words.
    const counted = new Proxy(pool, {
      get(target, property, receiver) {
        if (property === 'query') {
          return (text: string, values?: unknown[]) => {
            statements.push(text.trim().split(/\s+/).slice(0, 3).join(' '));
            return target.query(text, values);
          };
        }
        return Reflect.get(target, property, receiver) as unknown;
      },
    });
    service = createCommandService({
      pool: counted,
      commands: createCommandRepository(),
      devices: createDeviceRepository(),
      audit: createAuditRepository(),
      clock: Date.now,
      maxPendingPerDevice: MAX_PENDING,
      repliesEnabled: false,
      cancelWaitMs: 1000,
      changed: () => undefined,
      waiters: { until: async () => null },
    });
  });
  after(async () => {
    await pool.end();
    await ctx.close();
  });

  it('go to Postgres in one statement for the first create of each device, one more for each further create of one device; one device keeps its order', async () => {
    const devices = await newDevices(20);
    const busy = devices[0] as string;
    statements.length = 0;
    // The third names the device in capitals: the same device.
    const calls = [...devices.map((device, i) => ({ device, name: `n${i}` })), { device: busy, name: 'second' }, { device: busy.toUpperCase(), name: 'third' }];
    const results = await Promise.all(calls.map(({ device, name }) => service.create(ROOT, device, { name }, null)));
    assert.deepEqual(
      results.map((result) => [result.created, result.command.device_id, result.command.name]),
      calls.map(({ device, name }) => [true, device.toLowerCase(), name]),
    );
    assert.equal(statements.length, 3, statements.join('\n'));
    const { rows } = await pool.query<{ name: string }>('SELECT name FROM commands WHERE device_id = $1 ORDER BY seq', [busy]);
    assert.deepEqual(
      rows.map((row) => row.name),
      ['n0', 'second', 'third'],
    );
    const audited = await pool.query<{ n: string }>("SELECT count(*) AS n FROM audit_log WHERE action = 'command.create' AND object_id = ANY($1::text[])", [results.map((result) => result.command.id)]);
    assert.equal(Number(audited.rows[0]?.n), calls.length);
  });

  it('answer each create for itself: unknown, disabled, over the limit, a used key', async () => {
    const [plain, keyed, full] = await newDevices(3);
    const [disabled] = await newDevices(1, { disabled: true });
    for (let i = 0; i < MAX_PENDING; i++) await service.create(ROOT, full as string, { name: `fill${i}` }, null);
    const first = await service.create(ROOT, keyed as string, { name: 'once' }, 'key-1');
    const settled = await Promise.allSettled([
      service.create(ROOT, plain as string, { name: 'fine' }, null),
      service.create(ROOT, keyed as string, { name: 'once' }, 'key-1'),
      service.create(ROOT, full as string, { name: 'over' }, null),
      service.create(ROOT, disabled as string, { name: 'off' }, null),
      service.create(ROOT, '00000000-0000-4000-8000-0000000000aa', { name: 'nobody' }, null),
    ]);
    const [fine, again, over, off, nobody] = settled;
    assert.equal(fine?.status === 'fulfilled' && fine.value.created, true);
    assert.equal(again?.status === 'fulfilled' && !again.value.created && again.value.command.id === first.command.id, true);
    assert.equal(over?.status === 'rejected' && (over.reason as { code?: string }).code, 'too_many_pending_commands');
    assert.equal(off?.status === 'rejected' && (off.reason as { code?: string }).code, 'device_disabled');
    assert.equal(nobody?.status === 'rejected' && (nobody.reason as { statusCode?: number }).statusCode, 404);
  });

  it('one create that Postgres refuses fails alone; the others of its statement are made', async () => {
    const devices = await newDevices(3);
    const settled = await Promise.allSettled([
      service.create(ROOT, devices[0] as string, { name: 'good' }, null),
      // A name the table's CHECK refuses (the routes refuse it before; here nothing does).
      service.create(ROOT, devices[1] as string, { name: 'not a valid name!' }, null),
      service.create(ROOT, devices[2] as string, { name: 'also-good' }, null),
    ]);
    assert.deepEqual(
      settled.map((result) => result.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    const { rows } = await pool.query<{ name: string }>('SELECT name FROM commands WHERE device_id = ANY($1::uuid[]) ORDER BY name', [devices]);
    assert.deepEqual(
      rows.map((row) => row.name),
      ['also-good', 'good'],
    );
  });

  it('are planned as the small statements they are: 64 creates cost less than makes Postgres compile them (jit_above_cost)', async () => {
    // The statement and its values, as createMany sends them.
    let sent: { text: string; values: unknown[] } | undefined;
    const capture = {
      query: async (text: string, values: unknown[]) => {
        sent = { text, values };
        return { rows: [] };
      },
    } as unknown as pg.Pool;
    const commands = Array.from({ length: 64 }, (_, i) =>
      newCommand(randomUUID(), { name: `n${i}`, idempotencyKey: `key-${i}`, ttlS: 60, maxUnfinished: MAX_PENDING }),
    );
    await createCommandRepository().createMany(capture, commands);
    assert.ok(sent);
    const { rows } = await pool.query<{ 'QUERY PLAN': [{ Plan: { 'Total Cost': number } }] }>(`EXPLAIN (FORMAT JSON) ${sent.text}`, sent.values);
    const cost = rows[0]?.['QUERY PLAN'][0].Plan['Total Cost'] ?? Infinity;
    const jitAbove = Number((await pool.query<{ jit_above_cost: string }>('SHOW jit_above_cost')).rows[0]?.jit_above_cost);
    assert.ok(cost < jitAbove / 10, `estimated cost ${cost}, jit_above_cost ${jitAbove}`);
  });
});
