import pg from 'pg';
import { withTimeout } from '../lib/with-timeout.js';
import { createDependencyState, type DependencyLogger, type DependencyState } from '../lib/dependency-state.js';
import { checkOut } from './transaction.js';

export interface PostgresClient {
  readonly pool: pg.Pool;
  readonly state: DependencyState;
  ping(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export function createPostgres(
  options: { url: string; poolMax: number },
  logger: DependencyLogger,
): PostgresClient {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolMax,
    connectionTimeoutMillis: 2000,
    idleTimeoutMillis: 30_000,
    // Bounded so that a stuck database turns into an error, not a hung request.
    statement_timeout: 10_000,
    query_timeout: 12_000,
    application_name: 'device-link-mqtt',
  });
  const state = createDependencyState('postgres', logger);
  // An idle client losing its connection emits here; without a listener the process would crash.
  pool.on('error', (error) => state.down(error, { where: 'idle client' }));

  return {
    pool,
    state,
    async ping(timeoutMs) {
      const checkingOut = checkOut(pool);
      const { client, release } = await withTimeout(checkingOut, timeoutMs, 'postgres connect').catch((error: unknown) => {
        // A client that arrives after the timeout goes back to the pool.
        void checkingOut.then((late) => late.release(), () => undefined);
        throw error;
      });
      try {
        await withTimeout(client.query('SELECT 1'), timeoutMs, 'postgres ping');
        state.up();
        release();
      } catch (error) {
        release(true);
        state.down(error);
        throw error;
      }
    },
    close: () => pool.end(),
  };
}
