import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { withTransaction } from '../../infra/transaction.js';
import type { Clock } from '../../lib/clock.js';
import { ConflictError, ForbiddenError, NotFoundError, ServiceUnavailableError } from '../../lib/errors.js';
import { isTenantId } from '../../lib/identifiers.js';
import { parseCursor, toPage, type Page } from '../../lib/pagination.js';
import type { Actor } from '../../lib/actor.js';
import type { AuditRepository } from '../audit/audit-repository.js';
import type { ChangeRecorder } from '../changes/change-recorder.js';
import type { TenantRepository, TenantRow } from './tenant-repository.js';

export interface TenantView {
  id: string;
  name: string;
  device_count: number;
  created_at: string;
  updated_at: string;
}

function toView(row: TenantRow): TenantView {
  return {
    id: row.id,
    name: row.name,
    device_count: row.device_count,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export interface TenantServiceDeps {
  pool: Pool;
  tenants: TenantRepository;
  audit: AuditRepository;
  changes: ChangeRecorder;
  /** Creates the tenant's Kafka topics (idempotent). */
  provisionTopics: (tenantId: string) => Promise<void>;
  clock: Clock;
}

/** A tenant-scoped token sees its own tenant only; anything else does not exist for it. */
export function assertTenantVisible(actor: Actor, tenantId: string, what = `tenant ${tenantId}`) {
  if (actor.tenantId !== null && actor.tenantId !== tenantId) throw new NotFoundError(what);
}

export function createTenantService(deps: TenantServiceDeps) {
  const { pool, tenants, audit, clock } = deps;

  return {
    async create(actor: Actor, input: { id?: string; name: string }): Promise<TenantView> {
      if (actor.tenantId !== null) throw new ForbiddenError('creating tenants needs a global admin token');
      const id = input.id ?? randomUUID();
      if (await tenants.findById(pool, id)) throw new ConflictError(`tenant ${id} already exists`, 'tenant_exists');
      // Topics first: Redpanda does not auto-create them, and a tenant whose
      // topics are missing would have every telemetry message refused.
      try {
        await deps.provisionTopics(id);
      } catch {
        throw new ServiceUnavailableError('Kafka is unavailable: the tenant topics could not be created', 'kafka_unavailable');
      }
      const now = new Date(clock());
      const row = await withTransaction(pool, async (db) => {
        const created = await tenants.insert(db, { id, name: input.name, at: now });
        if (!created) throw new ConflictError(`tenant ${id} already exists`, 'tenant_exists');
        await audit.record(
          db,
          actor,
          { action: 'tenant.create', objectType: 'tenant', objectId: id, tenantId: id, details: { name: input.name } },
          now,
        );
        return created;
      });
      return toView(row);
    },

    async get(actor: Actor, id: string): Promise<TenantView> {
      assertTenantVisible(actor, id);
      const row = await tenants.findById(pool, id);
      if (!row) throw new NotFoundError(`tenant ${id}`);
      return toView(row);
    },

    async list(actor: Actor, query: { limit: number; cursor?: string }): Promise<Page<TenantView>> {
      const rows = await tenants.list(pool, {
        limit: query.limit,
        after: parseCursor(query.cursor, isTenantId),
        onlyId: actor.tenantId,
      });
      return toPage(rows, query.limit, (row) => row.id, toView);
    },

    /** Refused with 409 while the tenant has devices, unless forced. Topics are kept (their data is retained). */
    async delete(actor: Actor, id: string, force: boolean): Promise<void> {
      assertTenantVisible(actor, id);
      if (actor.tenantId !== null) throw new ForbiddenError('deleting tenants needs a global admin token');
      const now = new Date(clock());
      const at = now.toISOString();
      const committed = await withTransaction(pool, async (db) => {
        const tenant = await tenants.lockById(db, id);
        if (!tenant) throw new NotFoundError(`tenant ${id}`);
        if (tenant.device_count > 0 && !force) {
          throw new ConflictError(
            `tenant ${id} has ${tenant.device_count} device(s); delete them first or pass force=true`,
            'tenant_has_devices',
          );
        }
        const devices = await tenants.delete(db, id);
        await audit.record(
          db,
          actor,
          { action: 'tenant.delete', objectType: 'tenant', objectId: id, tenantId: id, details: { force, devices: devices.length } },
          now,
        );
        return deps.changes.record(
          db,
          devices.map((deviceId) => ({ kind: 'device_deleted' as const, device_id: deviceId, tenant_id: id, at })),
        );
      });
      await committed();
    },
  };
}

export type TenantService = ReturnType<typeof createTenantService>;
