import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { migrateDatabase } from '../src/infra/migrations.js';
import { adminClient } from './helpers/admin.js';
import { createTestContext, type TestContext } from './helpers/context.js';
import { connectAs } from './helpers/emqx-auth.js';
import { createPrivatePostgres, type PrivatePostgres } from './helpers/private-postgres.js';

const quiet = { info: () => undefined, warn: () => undefined };

/**
 * Readiness through a Postgres outage (a server of the test's own): a replica
 * holding verified credentials answers those devices and stays in the
 * Service's endpoints; one that holds none can answer nothing and leaves them.
 */
// Takeover: the same device connects several times here, which the reject policy refuses as a duplicate.
describe('/readyz through a Postgres outage', () => {
  let postgres: PrivatePostgres;
  let ctx: TestContext;

  before(async () => {
    postgres = await createPrivatePostgres();
    await postgres.start();
    await migrateDatabase(postgres.url, quiet);
    ctx = await createTestContext();
  });
  after(async () => {
    await ctx?.close();
    await postgres?.destroy();
  });

  const ready = async (app: FastifyInstance) => {
    const response = await app.inject({ method: 'GET', url: '/readyz' });
    return { status: response.statusCode, body: response.json() as { status: string; down: string[] } };
  };

  it('a replica that holds verified credentials stays ready and lets them in; a cold one is unready until Postgres is back', async () => {
    const warm = await ctx.app({}, { DATABASE_URL: postgres.url, DUPLICATE_CLIENT_POLICY: 'takeover' });
    const admin = adminClient(warm);
    assert.equal((await admin.post('/v1/tenants', { id: 'plant', name: 'Plant' })).statusCode, 201);
    const device = (await admin.post('/v1/tenants/plant/devices', { name: 'pump' })).json<{ id: string }>().id;
    const key = (await admin.post(`/v1/devices/${device}/keys`, { label: 'k' })).json<{ key: string }>().key;
    const other = (await admin.post('/v1/tenants/plant/devices', { name: 'valve' })).json<{ id: string }>().id;
    const otherKey = (await admin.post(`/v1/devices/${other}/keys`, { label: 'k' })).json<{ key: string }>().key;
    assert.equal(await connectAs(warm, device, key), 'allow');
    assert.equal((await ready(warm)).status, 200);

    await postgres.stop();
    try {
      const during = await ready(warm);
      assert.equal(during.status, 200, JSON.stringify(during.body));
      assert.deepEqual(during.body.down, ['postgres']);
      assert.equal(await connectAs(warm, device, key), 'allow', 'the credential it verified is answered from memory');
      assert.equal(await connectAs(warm, other, otherKey), 'ignore', 'one it never verified is refused for now, never allowed');

      const cold = await ctx.app({}, { DATABASE_URL: postgres.url, DUPLICATE_CLIENT_POLICY: 'takeover' });
      const coldDuring = await ready(cold);
      assert.equal(coldDuring.status, 503, JSON.stringify(coldDuring.body));
      assert.equal(coldDuring.body.status, 'not_ready');
      assert.deepEqual(coldDuring.body.down, ['postgres']);

      await postgres.start();
      assert.equal((await ready(cold)).status, 200);
      assert.equal(await connectAs(cold, other, otherKey), 'allow');
    } finally {
      await postgres.start().catch(() => undefined);
    }
  });
});
