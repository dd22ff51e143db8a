import type { Pool } from 'pg';

export interface StoredKey {
  readonly id: string;
  readonly deviceId: string;
  readonly hash: string;
  /** Milliseconds since the epoch, or null when the key does not expire. */
  readonly notAfter: number | null;
  readonly revoked: boolean;
}

export interface VerificationRepository {
  findKey(keyId: string): Promise<StoredKey | null>;
  findPskHash(deviceId: string): Promise<string | null>;
  /** Sets last_used_at for many keys in one statement, never moving it backwards. */
  markKeysUsed(keyIds: readonly string[], at: Date): Promise<void>;
}

interface KeyRow {
  id: string;
  device_id: string;
  hash: string;
  not_after: Date | null;
  revoked_at: Date | null;
}

export function createVerificationRepository(pool: Pool): VerificationRepository {
  return {
    async findKey(keyId) {
      const { rows } = await pool.query<KeyRow>(
        'SELECT id, device_id, hash, not_after, revoked_at FROM device_keys WHERE id = $1',
        [keyId],
      );
      const row = rows[0];
      if (!row) return null;
      return {
        id: row.id,
        deviceId: row.device_id,
        hash: row.hash,
        notAfter: row.not_after ? row.not_after.getTime() : null,
        revoked: row.revoked_at !== null,
      };
    },
    async findPskHash(deviceId) {
      const { rows } = await pool.query<{ hash: string }>('SELECT hash FROM device_psk WHERE device_id = $1', [deviceId]);
      return rows[0]?.hash ?? null;
    },
    async markKeysUsed(keyIds, at) {
      if (keyIds.length === 0) return;
      await pool.query(
        'UPDATE device_keys SET last_used_at = $2 WHERE id = ANY($1::text[]) AND (last_used_at IS NULL OR last_used_at < $2)',
        [keyIds, at],
      );
    },
  };
}
