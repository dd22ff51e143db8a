import { afterKey, CREATED_US } from '../../infra/sql.js';
import type { Queryable } from '../../infra/transaction.js';
import type { PageKey } from '../../lib/pagination.js';

export interface AdminTokenRow {
  id: string;
  digest: Buffer;
  label: string | null;
  tenant_id: string | null;
  created_at: Date;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_us: string;
}

const COLUMNS = `id, digest, label, tenant_id, created_at, revoked_at, last_used_at, ${CREATED_US}`;

export function createAdminTokenRepository() {
  return {
    async insert(
      db: Queryable,
      token: { id: string; digest: Buffer; label: string | null; tenantId: string | null; createdAt: Date },
    ): Promise<AdminTokenRow> {
      const { rows } = await db.query<AdminTokenRow>(
        `INSERT INTO admin_tokens (id, digest, label, tenant_id, created_at) VALUES ($1, $2, $3, $4, $5)
         RETURNING ${COLUMNS}`,
        [token.id, token.digest, token.label, token.tenantId, token.createdAt],
      );
      return rows[0] as AdminTokenRow;
    },

    async findById(db: Queryable, id: string): Promise<AdminTokenRow | null> {
      const { rows } = await db.query<AdminTokenRow>(`SELECT ${COLUMNS} FROM admin_tokens WHERE id = $1`, [id]);
      return rows[0] ?? null;
    },

    async list(db: Queryable, page: { limit: number; after: PageKey | undefined }): Promise<AdminTokenRow[]> {
      const values: unknown[] = [page.limit + 1];
      const { rows } = await db.query<AdminTokenRow>(
        `SELECT ${COLUMNS} FROM admin_tokens WHERE ${afterKey(values, page.after)} ORDER BY created_at, id LIMIT $1`,
        values,
      );
      return rows;
    },

    async revoke(db: Queryable, id: string, at: Date): Promise<AdminTokenRow | null> {
      const { rows } = await db.query<AdminTokenRow>(
        `UPDATE admin_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING ${COLUMNS}`,
        [id, at],
      );
      return rows[0] ?? null;
    },
  };
}

export type AdminTokenRepository = ReturnType<typeof createAdminTokenRepository>;
