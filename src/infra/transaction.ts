import type { Pool, PoolClient } from 'pg';

/** Something that runs parameterized SQL: the pool, or a client inside a transaction. */
export type Queryable = Pick<Pool, 'query'> | PoolClient;

/** Runs `work` in a transaction, committing when it resolves and rolling back when it throws. */
export async function withTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
