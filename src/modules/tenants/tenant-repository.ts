import { afterKey, CREATED_US } from '../../infra/sql.js';
import type { Queryable } from '../../infra/transaction.js';
import type { PageKey } from '../../lib/pagination.js';

export interface TenantRow {
  id: string;
  name: string;
  created_at: Date;
  updated_at: Date;
  device_count: number;
  created_us: string;
}

const COLUMNS = `id, name, created_at, updated_at, ${CREATED_US},
  (SELECT count(*)::int FROM devices d WHERE d.tenant_id = tenants.id) AS device_count`;

export function createTenantRepository() {
  return {
    /** Null when the id is taken. */
    async insert(db: Queryable, tenant: { id: string; name: string; at: Date }): Promise<TenantRow | null> {
      const { rows } = await db.query<TenantRow>(
        `INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
        [tenant.id, tenant.name, tenant.at],
      );
      return rows[0] ?? null;
    },

    async findById(db: Queryable, id: string): Promise<TenantRow | null> {
      const { rows } = await db.query<TenantRow>(`SELECT ${COLUMNS} FROM tenants WHERE id = $1`, [id]);
      return rows[0] ?? null;
    },

    /**
     * Locks the tenant row for the transaction: `update` to delete it, `share`
     * to add a device to it (the two exclude each other).
     */
    async lockById(db: Queryable, id: string, mode: 'update' | 'share' = 'update'): Promise<TenantRow | null> {
      const { rows } = await db.query<TenantRow>(
        `SELECT ${COLUMNS} FROM tenants WHERE id = $1 FOR ${mode === 'update' ? 'UPDATE' : 'SHARE'}`,
        [id],
      );
      return rows[0] ?? null;
    },

    async list(db: Queryable, page: { limit: number; after: PageKey | undefined; onlyId: string | null }): Promise<TenantRow[]> {
      const values: unknown[] = [page.limit + 1];
      let scope = 'TRUE';
      if (page.onlyId !== null) {
        values.push(page.onlyId);
        scope = `id = $${values.length}`;
      }
      const { rows } = await db.query<TenantRow>(
        `SELECT ${COLUMNS} FROM tenants WHERE ${scope} AND ${afterKey(values, page.after)}
         ORDER BY created_at, id LIMIT $1`,
        values,
      );
      return rows;
    },

    async listIds(db: Queryable): Promise<string[]> {
      const { rows } = await db.query<{ id: string }>('SELECT id FROM tenants ORDER BY id');
      return rows.map((row) => row.id);
    },

    /** The ids of the tenant's devices (for change signals), then the tenant and its devices. */
    async delete(db: Queryable, id: string): Promise<string[]> {
      const { rows } = await db.query<{ id: string }>('SELECT id FROM devices WHERE tenant_id = $1', [id]);
      await db.query('DELETE FROM tenants WHERE id = $1', [id]);
      return rows.map((row) => row.id);
    },
  };
}

export type TenantRepository = ReturnType<typeof createTenantRepository>;
