import pg from 'pg';
import { withTransaction } from '../../src/infra/transaction.js';
import { credentialChangeChannel, type CredentialChange } from '../../src/lib/credential-change.js';
import { createChangeRepository } from '../../src/modules/changes/change-repository.js';
import { KICK_DELAY_MS } from '../../src/wiring/changes.js';
import type { RedisSettings } from '../../src/infra/redis.js';
import { connectRedis } from './redis.js';
import { waitFor } from './wait.js';

/** What the helpers need of a test context: its database and its Redis (with the key prefix). */
export interface ChangeTarget {
  readonly db: { readonly url: string };
  readonly config: { readonly redis: RedisSettings };
}

/** Reads the change log of a test database, as a replica does. */
export function readChangeLog(target: ChangeTarget) {
  const pool = new pg.Pool({ connectionString: target.db.url, max: 1 });
  const repository = createChangeRepository();
  return {
    /** Resolves with the first logged change matching `predicate` (waiting up to 2 s). */
    async next(predicate: (change: CredentialChange) => boolean): Promise<CredentialChange> {
      let found: CredentialChange | undefined;
      await waitFor(async () => {
        const changes = await repository.readAfter(pool, '0', 10_000);
        const match = changes.find(predicate);
        if (match) {
          const { position: _position, ...change } = match;
          found = change;
        }
        return found !== undefined;
      }, 2000);
      return found as CredentialChange;
    },
    close: () => pool.end(),
  };
}

/**
 * Records a change the way the registry does after a test changed the rows
 * itself (the log entry, the device's new credential version, the queued
 * effects), and announces it to the replicas.
 */
export async function publishChange(target: ChangeTarget, change: Omit<CredentialChange, 'at'> & { at?: string }): Promise<void> {
  const pool = new pg.Pool({ connectionString: target.db.url, max: 1 });
  try {
    await withTransaction(pool, (db) =>
      createChangeRepository().record(db, [{ at: new Date().toISOString(), ...change }], { kickDelayMs: KICK_DELAY_MS }),
    );
  } finally {
    await pool.end();
  }
  const redis = connectRedis(target.config.redis);
  try {
    await redis.redis.publish(credentialChangeChannel(target.config.redis.keyPrefix), 'changed');
  } finally {
    await redis.close();
  }
}

type MetricsSource = { inject(options: { method: 'GET'; url: string }): Promise<{ body: string }> };

/** How many logged changes of a kind the app has applied (devicelink_credential_changes_applied_total). */
export async function changesApplied(app: MetricsSource, kind: string): Promise<number> {
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const match = new RegExp(`^devicelink_credential_changes_applied_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(metrics);
  return Number(match?.[1] ?? 0);
}

/**
 * Runs `send` (which records one change of `kind`) and resolves once every
 * app has applied it to what it holds in memory.
 */
export async function untilApplied(apps: readonly MetricsSource[], kind: string, send: () => Promise<unknown>, timeoutMs = 3000): Promise<void> {
  const before = await Promise.all(apps.map((app) => changesApplied(app, kind)));
  await send();
  await waitFor(async () => {
    const now = await Promise.all(apps.map((app) => changesApplied(app, kind)));
    return now.every((count, index) => count > (before[index] ?? 0));
  }, timeoutMs);
}
