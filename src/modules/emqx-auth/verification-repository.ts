import type { Pool } from 'pg';

/** How a key is stored: a keyed digest, or (issued before digests) an argon2id hash. */
export type KeyScheme = 'hmac-sha256' | 'argon2id';

export interface StoredKey {
  readonly id: string;
  readonly deviceId: string;
  readonly scheme: KeyScheme;
  /** The digest or hash, as the scheme says. */
  readonly hash: string;
  /** Milliseconds since the epoch, or null when the key does not expire. */
  readonly notAfter: number | null;
  readonly revoked: boolean;
}

export interface VerificationRepository {
  /** The keys among `keyIds` that exist, by id. */
  findKeys(keyIds: readonly string[]): Promise<Map<string, StoredKey>>;
  findPskHash(deviceId: string): Promise<string | null>;
  /**
   * Stores a verified key as a digest under the current secret, replacing
   * `previous` (what was read before verifying); false when the row changed
   * meanwhile.
   */
  restoreKey(keyId: string, previous: string, digest: string): Promise<boolean>;
  /** Sets last_used_at for many keys in one statement, never moving it backwards. */
  markKeysUsed(keyIds: readonly string[], at: Date): Promise<void>;
}

interface KeyRow {
  id: string;
  device_id: string;
  scheme: KeyScheme;
  hash: string;
  not_after: Date | null;
  revoked_at: Date | null;
}

export function createVerificationRepository(pool: Pool): VerificationRepository {
  return {
    async findKeys(keyIds) {
      const { rows } = await pool.query<KeyRow>(
        'SELECT id, device_id, scheme, hash, not_after, revoked_at FROM device_keys WHERE id = ANY($1::text[])',
        [keyIds],
      );
      return new Map(
        rows.map((row) => [
          row.id,
          {
            id: row.id,
            deviceId: row.device_id,
            scheme: row.scheme,
            hash: row.hash,
            notAfter: row.not_after ? row.not_after.getTime() : null,
            revoked: row.revoked_at !== null,
          },
        ]),
      );
    },
    async findPskHash(deviceId) {
      const { rows } = await pool.query<{ hash: string }>('SELECT hash FROM device_psk WHERE device_id = $1', [deviceId]);
      return rows[0]?.hash ?? null;
    },
    async restoreKey(keyId, previous, digest) {
      const { rowCount } = await pool.query(
        "UPDATE device_keys SET hash = $3, scheme = 'hmac-sha256' WHERE id = $1 AND hash = $2",
        [keyId, previous, digest],
      );
      return (rowCount ?? 0) > 0;
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
