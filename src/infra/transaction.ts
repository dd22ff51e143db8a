import type { Pool, PoolClient } from 'pg';

/** Something that runs parameterized SQL: the pool, or a client inside a transaction. */
export type Queryable = Pick<Pool, 'query'> | PoolClient;

export interface CheckedOutClient {
  readonly client: PoolClient;
  /** Back to the pool, or destroyed when asked or when its connection was lost meanwhile. */
  release(destroy?: boolean): void;
}

/**
 * A client from the pool, watched while it is out. The pool listens for a
 * lost connection only on idle clients: on a checked-out one the loss is
 * emitted on the client itself, and an 'error' event nobody listens to ends
 * the process. Here it is heard (the query under way fails with it) and the
 * client is destroyed on release.
 */
export async function checkOut(pool: Pool): Promise<CheckedOutClient> {
  const client = await pool.connect();
  let lost = false;
  const onLost = () => {
    lost = true;
  };
  client.on('error', onLost);
  return {
    client,
    release(destroy = false) {
      client.off('error', onLost);
      client.release(destroy || lost);
    },
  };
}

/** Runs `work` in a transaction, committing when it resolves and rolling back when it throws. */
export async function withTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const { client, release } = await checkOut(pool);
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
    release(broken);
  }
}
