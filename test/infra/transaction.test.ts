import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { checkOut, withTransaction } from '../../src/infra/transaction.js';
import { isUnavailable } from '../../src/lib/unavailable.js';
import { TEST_POSTGRES_ADMIN_URL } from '../helpers/env.js';

// Postgres ending a connection that a transaction holds (a restart, a
// failover, an administrator) must fail that transaction, not the process:
// on a checked-out client the loss is an 'error' event that nothing in the
// pool listens to.
describe('a connection lost while checked out', () => {
  let pool: pg.Pool;
  let admin: pg.Pool;
  before(() => {
    pool = new pg.Pool({ connectionString: TEST_POSTGRES_ADMIN_URL, max: 2 });
    admin = new pg.Pool({ connectionString: TEST_POSTGRES_ADMIN_URL, max: 1 });
  });
  after(async () => {
    await pool.end();
    await admin.end();
  });

  const terminate = (pid: number) => admin.query('SELECT pg_terminate_backend($1)', [pid]);

  it('fails the transaction as unavailable, destroys the client and leaves the pool working', async () => {
    const attempt = withTransaction(pool, async (client) => {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await terminate(rows[0]!.pid);
      // No query is under way while the connection goes: the client alone hears it.
      await sleep(300);
      await client.query('SELECT 1');
    });
    // Unavailable for now (answered 503 and retried), not a bug (500).
    await assert.rejects(attempt, (error) => isUnavailable(error));
    const { rows } = await pool.query<{ one: number }>('SELECT 1 AS one');
    assert.equal(rows[0]!.one, 1);
  });

  it('is heard on any checked-out client, which release then destroys', async () => {
    const { client, release } = await checkOut(pool);
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await terminate(rows[0]!.pid);
    await sleep(300);
    release();
    const after = await Promise.all([pool.query('SELECT pg_backend_pid() AS pid'), pool.query('SELECT pg_backend_pid() AS pid')]);
    assert.ok(after.every((result) => result.rows[0].pid !== rows[0]!.pid), 'the lost client is not handed out again');
  });
});
