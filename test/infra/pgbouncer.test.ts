import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { readMigrations, runMigrations } from '../../src/infra/migrations.js';
import { adminClient } from '../helpers/admin.js';
import { createCommand, type CommandBody } from '../helpers/commands.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { createEmptyDatabase, type TestDatabase } from '../helpers/database.js';
import { connectAs } from '../helpers/emqx-auth.js';
import { uniqueTag } from '../helpers/env.js';
import { startPrivatePgBouncer, type PrivatePgBouncer } from '../helpers/private-pgbouncer.js';

const silent = { info: () => undefined };

/**
 * Postgres behind PgBouncer in transaction mode: each transaction may run on
 * another server connection, so the service must rely on nothing that lives
 * in a session.
 */
describe('Postgres behind PgBouncer in transaction mode', () => {
  let bouncer: PrivatePgBouncer;
  let ctx: TestContext;
  let apps: FastifyInstance[];
  let empty: TestDatabase;

  before(async () => {
    bouncer = await startPrivatePgBouncer();
    ctx = await createTestContext();
    const through = { DATABASE_URL: bouncer.urlOf(ctx.db.name), DUPLICATE_CLIENT_POLICY: 'takeover' };
    apps = [await ctx.app({}, through), await ctx.app({}, through)];
    empty = await createEmptyDatabase(uniqueTag());
  });
  after(async () => {
    await ctx?.close();
    await empty?.drop();
    await bouncer?.stop();
  });

  it('migrates through the pooler, two migrators at once applying each migration once', async () => {
    const pools = [0, 1].map(() => new pg.Pool({ connectionString: bouncer.urlOf(empty.name), max: 1 }));
    try {
      const all = await readMigrations();
      const [first, second] = await Promise.all(pools.map((pool) => runMigrations(pool, silent, all)));
      assert.deepEqual([...(first ?? []), ...(second ?? [])].sort(), all.map((migration) => migration.version));
      assert.deepEqual(await runMigrations(pools[0] as pg.Pool, silent, all), []);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });

  it('registers, authenticates, revokes and creates commands through it, from two replicas at once', async () => {
    const [first, second] = apps as [FastifyInstance, FastifyInstance];
    const admin = adminClient(first);
    assert.equal((await admin.post('/v1/tenants', { id: 'pooled', name: 'Pooled' })).statusCode, 201);
    const devices = await Promise.all(
      Array.from({ length: 20 }, async (_, index) => {
        const app = index % 2 === 0 ? first : second;
        const device = (await adminClient(app).post('/v1/tenants/pooled/devices', { name: `d${index}` })).json<{ id: string }>().id;
        const key = (await adminClient(app).post(`/v1/devices/${device}/keys`)).json<{ id: string; key: string }>();
        return { device, key };
      }),
    );
    for (const [index, { device, key }] of devices.entries()) assert.equal(await connectAs(index % 2 ? first : second, device, key.key), 'allow');

    // Revocations on both replicas at once: each takes the change log's head in its transaction.
    await Promise.all(devices.map(({ device, key }, index) => adminClient(index % 2 ? first : second).delete(`/v1/devices/${device}/keys/${key.id}`)));
    for (const [index, { device, key }] of devices.entries()) assert.equal(await connectAs(index % 2 ? second : first, device, key.key), 'deny');

    const target = devices[0]?.device as string;
    const created = await createCommand(first, target, { name: 'reboot' }, { idempotencyKey: 'pooled-1' });
    assert.equal(created.statusCode, 202, created.body);
    const again = await createCommand(second, target, { name: 'reboot' }, { idempotencyKey: 'pooled-1' });
    assert.equal(again.json<CommandBody>().id, created.json<CommandBody>().id);
    const audit = await admin.get('/v1/audit?limit=200');
    assert.equal(audit.statusCode, 200, audit.body);
    assert.ok((audit.json().items as { action: string }[]).filter((entry) => entry.action === 'key.revoke').length === 20);
  });
});
