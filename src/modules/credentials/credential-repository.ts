import { afterKey, CREATED_US } from '../../infra/sql.js';
import type { Queryable } from '../../infra/transaction.js';
import type { PageKey } from '../../lib/pagination.js';

export interface DeviceKeyRow {
  id: string;
  device_id: string;
  label: string | null;
  created_at: Date;
  not_after: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_us: string;
}

// The hash column (a key's digest) is never selected here: nothing on the admin side needs it.
const KEY_COLUMNS = `id, device_id, label, created_at, not_after, revoked_at, last_used_at, ${CREATED_US}`;

/** Keys that still authenticate at `now`. */
const USABLE = `revoked_at IS NULL AND (not_after IS NULL OR not_after > $2)`;

export function createCredentialRepository() {
  return {
    async insertKey(
      db: Queryable,
      key: { id: string; deviceId: string; digest: string; label: string | null; notAfter: Date | null; at: Date },
    ): Promise<DeviceKeyRow> {
      const { rows } = await db.query<DeviceKeyRow>(
        `INSERT INTO device_keys (id, device_id, hash, scheme, label, created_at, not_after)
         VALUES ($1, $2, $3, 'hmac-sha256', $4, $5, $6) RETURNING ${KEY_COLUMNS}`,
        [key.id, key.deviceId, key.digest, key.label, key.at, key.notAfter],
      );
      return rows[0] as DeviceKeyRow;
    },

    /** Keys for new devices, in one statement. */
    async insertKeys(db: Queryable, keys: readonly { id: string; deviceId: string; digest: string }[], at: Date): Promise<void> {
      if (keys.length === 0) return;
      await db.query(
        `INSERT INTO device_keys (id, device_id, hash, scheme, created_at)
         SELECT id, "deviceId", digest, 'hmac-sha256', $2 FROM jsonb_to_recordset($1::jsonb) AS k(id text, "deviceId" uuid, digest text)`,
        [JSON.stringify(keys), at],
      );
    },

    async countUsableKeys(db: Queryable, deviceId: string, now: Date): Promise<number> {
      const { rows } = await db.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM device_keys WHERE device_id = $1 AND ${USABLE}`,
        [deviceId, now],
      );
      return rows[0]?.count ?? 0;
    },

    async listKeys(db: Queryable, page: { deviceId: string; limit: number; after: PageKey | undefined }): Promise<DeviceKeyRow[]> {
      const values: unknown[] = [page.limit + 1, page.deviceId];
      const { rows } = await db.query<DeviceKeyRow>(
        `SELECT ${KEY_COLUMNS} FROM device_keys
          WHERE device_id = $2 AND ${afterKey(values, page.after)}
          ORDER BY created_at, id LIMIT $1`,
        values,
      );
      return rows;
    },

    /**
     * Sets not_after = now + grace on the device's usable keys (never extending
     * an earlier expiry); returns the keys it shortened.
     */
    async expireUsableKeys(db: Queryable, deviceId: string, now: Date, notAfter: Date): Promise<string[]> {
      const { rows } = await db.query<{ id: string }>(
        `UPDATE device_keys SET not_after = LEAST(coalesce(not_after, $3), $3)
          WHERE device_id = $1 AND ${USABLE}
          RETURNING id`,
        [deviceId, now, notAfter],
      );
      return rows.map((row) => row.id).sort();
    },

    /** Null when the device has no such key; an already revoked key keeps its first revocation time. */
    async revokeKey(db: Queryable, deviceId: string, keyId: string, at: Date): Promise<{ alreadyRevoked: boolean } | null> {
      const { rows } = await db.query<{ already: boolean }>(
        `WITH before AS (SELECT revoked_at FROM device_keys WHERE device_id = $1 AND id = $2 FOR UPDATE)
         UPDATE device_keys SET revoked_at = coalesce(device_keys.revoked_at, $3)
           FROM before
          WHERE device_id = $1 AND id = $2
          RETURNING before.revoked_at IS NOT NULL AS already`,
        [deviceId, keyId, at],
      );
      const row = rows[0];
      return row ? { alreadyRevoked: row.already } : null;
    },

    /** True when a PSK was replaced, false when it is the device's first. */
    async upsertPsk(db: Queryable, deviceId: string, hash: string, at: Date): Promise<boolean> {
      const { rows } = await db.query<{ replaced: boolean }>(
        `INSERT INTO device_psk (device_id, hash, created_at, updated_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (device_id) DO UPDATE SET hash = EXCLUDED.hash, updated_at = EXCLUDED.updated_at
         RETURNING (xmax <> 0) AS replaced`,
        [deviceId, hash, at],
      );
      return rows[0]?.replaced ?? false;
    },

    async deletePsk(db: Queryable, deviceId: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM device_psk WHERE device_id = $1', [deviceId]);
      return (rowCount ?? 0) > 0;
    },

    async hasPsk(db: Queryable, deviceId: string): Promise<{ created_at: Date; updated_at: Date } | null> {
      const { rows } = await db.query<{ created_at: Date; updated_at: Date }>(
        'SELECT created_at, updated_at FROM device_psk WHERE device_id = $1',
        [deviceId],
      );
      return rows[0] ?? null;
    },
  };
}

export type CredentialRepository = ReturnType<typeof createCredentialRepository>;
