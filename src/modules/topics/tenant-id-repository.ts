import type { Pool } from 'pg';

/** Every tenant id, for reconciling per-tenant topics at start-up. */
export function createTenantIdRepository(pool: Pick<Pool, 'query'>) {
  return {
    async listTenantIds(): Promise<string[]> {
      const { rows } = await pool.query<{ id: string }>('SELECT id FROM tenants ORDER BY id');
      return rows.map((row) => row.id);
    },
  };
}

export type TenantIdRepository = ReturnType<typeof createTenantIdRepository>;
