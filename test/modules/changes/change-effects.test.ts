import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { withTransaction } from '../../../src/infra/transaction.js';
import { createChangeEffects, retryDelayMs } from '../../../src/modules/changes/change-effects.js';
import { createChangeRepository, type ChangeEffect } from '../../../src/modules/changes/change-repository.js';
import { createTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { uniqueTag } from '../../helpers/env.js';

const silent = { warn: () => undefined, info: () => undefined };

describe('the effects of changes, in Postgres', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  const repository = createChangeRepository();

  before(async () => {
    db = await createTestDatabase(uniqueTag());
    pool = new pg.Pool({ connectionString: db.url, max: 4 });
    await pool.query(`INSERT INTO tenants (id, name) VALUES ('acme', 'Acme')`);
  });
  after(async () => {
    await pool.end();
    await db.drop();
  });

  const device = async () =>
    (await pool.query<{ id: string }>(`INSERT INTO devices (id, tenant_id, name) VALUES (gen_random_uuid(), 'acme', 'd') RETURNING id`)).rows[0]!.id;
  const record = (deviceId: string, kind: 'device_disabled' | 'device_updated', kickDelayMs = 0) =>
    withTransaction(pool, (client) => repository.record(client, [{ kind, device_id: deviceId, tenant_id: 'acme', at: new Date().toISOString() }], { kickDelayMs }));
  const worker = (handle: (effect: ChangeEffect) => Promise<void>) =>
    createChangeEffects({
      claim: (limit, leaseMs) => repository.claimEffects(pool, limit, leaseMs),
      complete: (ids) => repository.completeEffects(pool, ids),
      retry: (id, delayMs, error) => repository.retryEffect(pool, id, delayMs, error),
      handlers: { kick: handle, clean_up: handle },
      log: silent,
    });

  it('records a change with its position, a new credential version, and the effects it needs', async () => {
    const id = await device();
    const versionOf = async () => (await pool.query('SELECT credential_version::text AS v FROM devices WHERE id = $1', [id])).rows[0].v as string;
    const before = await versionOf();
    await record(id, 'device_updated');
    assert.equal(await versionOf(), before, 'a rename or threshold change leaves verifications alone');
    await record(id, 'device_disabled', 60_000);
    assert.notEqual(await versionOf(), before);
    const logged = await repository.readAfter(pool, '0', 100);
    assert.deepEqual(logged.filter((c) => c.device_id === id).map((c) => c.kind), ['device_updated', 'device_disabled']);
    assert.equal(BigInt(logged.at(-1)!.position), BigInt(await repository.head(pool)));
    const { rows } = await pool.query(`SELECT effect, kind, due_at > now() + interval '50 seconds' AS later FROM change_effects WHERE device_id = $1 ORDER BY id`, [id]);
    assert.deepEqual(rows, [
      { effect: 'clean_up', kind: 'device_updated', later: false },
      { effect: 'kick', kind: 'device_disabled', later: true },
      { effect: 'clean_up', kind: 'device_disabled', later: false },
    ]);
    await pool.query('DELETE FROM change_effects');
  });

  it('positions commit in order: a change waits for the one that took the head before it', async () => {
    const [a, b] = [await device(), await device()];
    const holder = await pool.connect();
    try {
      await holder.query('BEGIN');
      await repository.record(holder, [{ kind: 'device_updated', device_id: a, tenant_id: 'acme', at: new Date().toISOString() }], { kickDelayMs: 0 });
      let secondDone = false;
      const second = record(b, 'device_updated').then(() => (secondDone = true));
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(secondDone, false, 'the second change waits for the head');
      await holder.query('COMMIT');
      await second;
      const logged = (await repository.readAfter(pool, '0', 1000)).filter((c) => c.device_id === a || c.device_id === b);
      assert.deepEqual(logged.map((c) => c.device_id), [a, b]);
    } finally {
      holder.release();
      await pool.query('DELETE FROM change_effects');
    }
  });

  it('an effect that fails is due again after its backoff; one that succeeds is gone; each is done by one worker', async () => {
    const id = await device();
    await record(id, 'device_updated');
    const seen: number[] = [];
    let fail = true;
    const handle = async (effect: ChangeEffect) => {
      seen.push(effect.attempts);
      if (fail) throw new Error('Redis is away');
    };
    await Promise.all([worker(handle).runDue(), worker(handle).runDue()]);
    assert.deepEqual(seen, [1], 'one worker took it');
    const { rows } = await pool.query(`SELECT attempts, last_error, due_at > now() + interval '500 milliseconds' AS backing_off FROM change_effects WHERE device_id = $1`, [id]);
    assert.deepEqual(rows, [{ attempts: 1, last_error: 'Redis is away', backing_off: true }]);
    await worker(handle).runDue();
    assert.deepEqual(seen, [1], 'not due yet');
    await pool.query(`UPDATE change_effects SET due_at = now() WHERE device_id = $1`, [id]);
    fail = false;
    await worker(handle).runDue();
    assert.deepEqual(seen, [1, 2]);
    assert.equal((await pool.query('SELECT count(*)::int AS n FROM change_effects WHERE device_id = $1', [id])).rows[0].n, 0);
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(retryDelayMs), [1000, 2000, 4000, 8000, 10_000, 10_000]);
  });

  it("the effects of a change just committed: done when runFor resolves, also one this replica's worker took first", async () => {
    const id = await device();
    await record(id, 'device_updated');
    const started = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    let done = false;
    const effects = worker(async () => {
      started.resolve();
      await release.promise;
      done = true;
    });
    const periodic = effects.runDue();
    await started.promise;
    // The worker holds the effect under its lease: runFor's own claim finds nothing due.
    const forDevice = effects.runFor([id]).then(() => done);
    setTimeout(() => release.resolve(), 50);
    assert.equal(await forDevice, true, 'runFor resolved while the effect was still under way');
    await periodic;
  });

  it("the effects of a change just committed: done when runFor resolves, also while the worker's claim of them is still on its way back", async () => {
    const id = await device();
    await record(id, 'device_updated');
    const leased = Promise.withResolvers<void>();
    let done = false;
    const effects = createChangeEffects({
      async claim(limit, leaseMs, deviceIds) {
        const claimed = await repository.claimEffects(pool, limit, leaseMs, deviceIds);
        if (deviceIds === undefined && claimed.length > 0) {
          // The worker's claim has committed its lease; its answer is still to come.
          leased.resolve();
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        return claimed;
      },
      complete: (ids) => repository.completeEffects(pool, ids),
      retry: (effectId, delayMs, error) => repository.retryEffect(pool, effectId, delayMs, error),
      handlers: {
        kick: async () => undefined,
        clean_up: async () => {
          done = true;
        },
      },
      log: silent,
    });
    const periodic = effects.runDue();
    await leased.promise;
    assert.equal(await effects.runFor([id]).then(() => done), true, 'runFor resolved before the effect the worker had claimed was done');
    await periodic;
  });
});
