import type { Queryable } from '../../infra/transaction.js';
import { changesCredentials, endsSessions, type CredentialChange, type CredentialChangeKind } from '../../lib/credential-change.js';

/** A change as the log holds it: its position orders it among all changes. */
export interface LoggedChange extends CredentialChange {
  /** A bigint, as text. */
  readonly position: string;
}

export type EffectName = 'kick' | 'clean_up';

/** Work a change left, claimed by one replica until done or due again. */
export interface ChangeEffect {
  readonly id: string;
  readonly effect: EffectName;
  /** The change that left it: a credential change kind, or `key_expired`. */
  readonly kind: CredentialChangeKind | 'key_expired';
  readonly deviceId: string;
  readonly tenantId: string;
  readonly keyId: string | null;
  readonly createdAt: Date;
  /** Counting this one. */
  readonly attempts: number;
}

export interface PendingEffects {
  readonly effect: EffectName;
  readonly count: number;
  /** Age of the oldest pending one, in seconds. */
  readonly oldestS: number;
}

interface LogRow {
  position: string;
  kind: CredentialChangeKind;
  device_id: string;
  tenant_id: string;
  key_id: string | null;
  at: Date;
}

interface EffectRow {
  id: string;
  effect: EffectName;
  kind: ChangeEffect['kind'];
  device_id: string;
  tenant_id: string;
  key_id: string | null;
  created_at: Date;
  attempts: number;
}

const toEffect = (row: EffectRow): ChangeEffect => ({
  id: row.id,
  effect: row.effect,
  kind: row.kind,
  deviceId: row.device_id,
  tenantId: row.tenant_id,
  keyId: row.key_id,
  createdAt: row.created_at,
  attempts: row.attempts,
});

const EFFECT_COLUMNS = 'id::text AS id, effect, kind, device_id, tenant_id, key_id, created_at, attempts';

/**
 * The change log and the effects queue (migration 0006). Times that replicas
 * compare (when an effect is due) are Postgres' own `now()`, so no replica's
 * clock decides for the others.
 */
export function createChangeRepository() {
  return {
    /**
     * Inside the change's transaction: appends the changes to the log in this
     * order, gives their devices a new credential version where the change
     * voids earlier verifications, and queues what must follow them. The
     * log's head row stays locked until the transaction ends, which orders
     * concurrent changes; take it after the device rows a change locks.
     * Kicks are due `kickDelayMs` after the commit: every replica has read
     * the change by then, so a kicked device cannot reconnect with what the
     * change revoked.
     */
    async record(db: Queryable, changes: readonly CredentialChange[], options: { kickDelayMs: number }): Promise<void> {
      if (changes.length === 0) return;
      const column = <K extends keyof CredentialChange>(key: K) => changes.map((change) => change[key] ?? null);
      await db.query(
        `WITH head AS (
           UPDATE credential_change_head SET position = position + $1 RETURNING position - $1 AS base
         )
         INSERT INTO credential_changes (position, kind, device_id, tenant_id, key_id, at)
         SELECT head.base + change.n, change.kind, change.device_id, change.tenant_id, change.key_id, change.at
           FROM head, unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[]) WITH ORDINALITY
                AS change(kind, device_id, tenant_id, key_id, at, n)`,
        [changes.length, column('kind'), column('device_id'), column('tenant_id'), column('key_id'), column('at')],
      );
      const voiding = changes.filter((change) => changesCredentials(change.kind)).map((change) => change.device_id);
      if (voiding.length > 0) {
        await db.query(`UPDATE devices SET credential_version = nextval('device_credential_versions') WHERE id = ANY($1::uuid[])`, [voiding]);
      }
      const effects = changes.flatMap((change) => [
        ...(endsSessions(change.kind) ? [{ effect: 'kick' as const, change }] : []),
        { effect: 'clean_up' as const, change },
      ]);
      await db.query(
        `INSERT INTO change_effects (effect, kind, device_id, tenant_id, key_id, created_at, due_at)
         SELECT effect, kind, device_id, tenant_id, key_id, now(),
                now() + CASE WHEN effect = 'kick' THEN $6::integer ELSE 0 END * interval '1 millisecond'
           FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[]) AS e(effect, kind, device_id, tenant_id, key_id)`,
        [
          effects.map(({ effect }) => effect),
          effects.map(({ change }) => change.kind),
          effects.map(({ change }) => change.device_id),
          effects.map(({ change }) => change.tenant_id),
          effects.map(({ change }) => change.key_id ?? null),
          options.kickDelayMs,
        ],
      );
    },

    /** The position of the last committed change (0 before the first). */
    async head(db: Queryable): Promise<string> {
      const { rows } = await db.query<{ position: string }>('SELECT position::text AS position FROM credential_change_head');
      return rows[0]?.position ?? '0';
    },

    /** Up to `limit` changes after `position`, in order. */
    async readAfter(db: Queryable, position: string, limit: number): Promise<LoggedChange[]> {
      const { rows } = await db.query<LogRow>(
        `SELECT position::text AS position, kind, device_id, tenant_id, key_id, at
           FROM credential_changes WHERE position > $1::bigint ORDER BY position LIMIT $2`,
        [position, limit],
      );
      return rows.map((row) => ({
        position: row.position,
        kind: row.kind,
        device_id: row.device_id,
        tenant_id: row.tenant_id,
        ...(row.key_id !== null ? { key_id: row.key_id } : {}),
        at: row.at.toISOString(),
      }));
    },

    /** Deletes up to `limit` changes older than `before`; returns how many. */
    async prune(db: Queryable, before: Date, limit: number): Promise<number> {
      const { rowCount } = await db.query(
        'DELETE FROM credential_changes WHERE position IN (SELECT position FROM credential_changes WHERE at < $1 ORDER BY position LIMIT $2)',
        [before, limit],
      );
      return rowCount ?? 0;
    },

    /**
     * Queues a kick for every key whose not_after has come (not revoked:
     * revoking queued its own), once: the key is marked in the same statement.
     * Returns how many were queued.
     */
    async queueKeyExpiryKicks(db: Queryable, now: Date, limit: number): Promise<number> {
      const { rowCount } = await db.query(
        `WITH due AS (
           UPDATE device_keys SET sessions_ended_at = $1
            WHERE id IN (SELECT id FROM device_keys
                          WHERE sessions_ended_at IS NULL AND not_after IS NOT NULL AND not_after <= $1 AND revoked_at IS NULL
                          ORDER BY not_after LIMIT $2
                          FOR UPDATE SKIP LOCKED)
            RETURNING id, device_id
         )
         INSERT INTO change_effects (effect, kind, device_id, tenant_id, key_id, created_at, due_at)
         SELECT 'kick', 'key_expired', due.device_id, devices.tenant_id, due.id, now(), now()
           FROM due JOIN devices ON devices.id = due.device_id`,
        [now, limit],
      );
      return rowCount ?? 0;
    },

    /**
     * Takes up to `limit` due effects (of these devices only, when given),
     * each for one caller: it is not due again for `leaseMs`.
     */
    async claimEffects(db: Queryable, limit: number, leaseMs: number, deviceIds?: readonly string[]): Promise<ChangeEffect[]> {
      const { rows } = await db.query<EffectRow>(
        `UPDATE change_effects SET due_at = now() + $2 * interval '1 millisecond', attempts = attempts + 1
          WHERE id IN (SELECT id FROM change_effects
                        WHERE due_at <= now() AND ($3::uuid[] IS NULL OR device_id = ANY($3::uuid[]))
                        ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
          RETURNING ${EFFECT_COLUMNS}`,
        [limit, leaseMs, deviceIds ?? null],
      );
      return rows.map(toEffect);
    },

    async completeEffects(db: Queryable, ids: readonly string[]): Promise<void> {
      if (ids.length > 0) await db.query('DELETE FROM change_effects WHERE id = ANY($1::bigint[])', [ids]);
    },

    /** The effect failed: due again after `delayMs`. */
    async retryEffect(db: Queryable, id: string, delayMs: number, error: string): Promise<void> {
      await db.query(`UPDATE change_effects SET due_at = now() + $2 * interval '1 millisecond', last_error = $3 WHERE id = $1`, [
        id,
        delayMs,
        error.slice(0, 500),
      ]);
    },

    async pendingEffects(db: Queryable): Promise<PendingEffects[]> {
      const { rows } = await db.query<{ effect: EffectName; count: number; oldest_s: number }>(
        `SELECT effect, count(*)::int AS count, extract(epoch FROM now() - min(created_at))::float8 AS oldest_s
           FROM change_effects GROUP BY effect`,
      );
      return rows.map((row) => ({ effect: row.effect, count: row.count, oldestS: Math.max(0, row.oldest_s) }));
    },
  };
}

export type ChangeRepository = ReturnType<typeof createChangeRepository>;
