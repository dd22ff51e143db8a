import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { withTransaction, type Queryable } from '../../infra/transaction.js';
import type { Clock } from '../../lib/clock.js';
import type { CredentialChangeKind } from '../../lib/credential-change.js';
import type { DecoderConfig } from '../../lib/decoder-config.js';
import type { DeviceLabels } from '../../lib/device-labels.js';
import { ConflictError, NotFoundError } from '../../lib/errors.js';
import { isDeviceId } from '../../lib/identifiers.js';
import { parseCursor, toPage, type Page } from '../../lib/pagination.js';
import type { Actor } from '../../lib/actor.js';
import type { AuditRepository } from '../audit/audit-repository.js';
import type { ChangeRecorder } from '../changes/change-recorder.js';
import { assertTenantVisible } from '../tenants/tenant-service.js';
import type { TenantRepository } from '../tenants/tenant-repository.js';
import type { DevicePatch, DeviceRepository, DeviceRow } from './device-repository.js';

/** Seconds without telemetry after which a device is offline, unless set. */
export const DEFAULT_OFFLINE_THRESHOLD_S = 120;

export interface DeviceView {
  id: string;
  tenant_id: string;
  name: string;
  disabled: boolean;
  offline_threshold_s: number;
  decoder: DecoderConfig | null;
  labels: DeviceLabels;
  created_at: string;
  updated_at: string;
  /** Last known liveness as stored in Postgres; GET /v1/devices/{id}/status has the live one. */
  online: boolean;
  last_seen_at: string | null;
}

export function toDeviceView(row: DeviceRow): DeviceView {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    name: row.name,
    disabled: row.disabled,
    offline_threshold_s: row.offline_threshold_s,
    decoder: row.decoder,
    labels: row.labels,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    online: row.online,
    last_seen_at: row.last_seen_at?.toISOString() ?? null,
  };
}

export interface DeviceServiceDeps {
  pool: Pool;
  devices: DeviceRepository;
  tenants: Pick<TenantRepository, 'findById' | 'lockById'>;
  audit: AuditRepository;
  changes: ChangeRecorder;
  clock: Clock;
}

/**
 * The device, if the actor may see it. A device of another tenant answers
 * exactly like a missing one.
 */
export async function findVisibleDevice(
  devices: Pick<DeviceRepository, 'findById'>,
  db: Queryable,
  actor: Actor,
  id: string,
  lock = false,
): Promise<DeviceRow> {
  const row = await devices.findById(db, id, lock);
  if (!row || (actor.tenantId !== null && actor.tenantId !== row.tenant_id)) throw new NotFoundError(`device ${id}`);
  return row;
}

/** Labels say nothing about what may connect, so changing them is no change for the hot paths. */
function changeKindOf(before: DeviceRow, patch: DevicePatch): CredentialChangeKind | null {
  if (patch.disabled !== undefined && patch.disabled !== before.disabled) {
    return patch.disabled ? 'device_disabled' : 'device_enabled';
  }
  const changed =
    (patch.offline_threshold_s !== undefined && patch.offline_threshold_s !== before.offline_threshold_s) ||
    (patch.decoder !== undefined && JSON.stringify(patch.decoder) !== JSON.stringify(before.decoder)) ||
    (patch.name !== undefined && patch.name !== before.name);
  return changed ? 'device_updated' : null;
}

/**
 * Device ids are global (they are MQTT client ids), so a taken id may be
 * another tenant's. A tenant-scoped token is told only that it cannot use the
 * id, whoever holds it: otherwise creating devices would tell it which ids
 * exist in other tenants.
 */
function idTaken(actor: Actor, id: string): ConflictError {
  if (actor.tenantId === null) return new ConflictError(`device ${id} already exists`, 'device_exists');
  return new ConflictError(`device id ${id} cannot be used; choose another or leave id out to have one generated`, 'device_id_unavailable');
}

export function createDeviceService(deps: DeviceServiceDeps) {
  const { pool, devices, audit, clock } = deps;

  return {
    async create(
      actor: Actor,
      tenantId: string,
      input: { id?: string; name: string; disabled?: boolean; offline_threshold_s?: number; decoder?: DecoderConfig | null; labels?: DeviceLabels },
    ): Promise<DeviceView> {
      assertTenantVisible(actor, tenantId);
      const id = input.id ?? randomUUID();
      const now = new Date(clock());
      const row = await withTransaction(pool, async (db) => {
        // Blocks a concurrent delete of the tenant until this device is committed.
        if (!(await deps.tenants.lockById(db, tenantId, 'share'))) throw new NotFoundError(`tenant ${tenantId}`);
        const created = await devices.insert(db, {
          id,
          tenantId,
          name: input.name,
          disabled: input.disabled ?? false,
          offlineThresholdS: input.offline_threshold_s ?? DEFAULT_OFFLINE_THRESHOLD_S,
          decoder: input.decoder ?? null,
          labels: input.labels ?? {},
          at: now,
        });
        if (!created) throw idTaken(actor, id);
        await audit.record(
          db,
          actor,
          { action: 'device.create', objectType: 'device', objectId: id, tenantId, details: { name: input.name } },
          now,
        );
        return created;
      });
      return toDeviceView(row);
    },

    async get(actor: Actor, id: string): Promise<DeviceView> {
      return toDeviceView(await findVisibleDevice(devices, pool, actor, id));
    },

    async list(
      actor: Actor,
      tenantId: string,
      query: { limit: number; cursor?: string; status?: 'online' | 'offline'; label?: DeviceLabels | null },
    ): Promise<Page<DeviceView>> {
      assertTenantVisible(actor, tenantId);
      const after = parseCursor(query.cursor, isDeviceId);
      if (!(await deps.tenants.findById(pool, tenantId))) throw new NotFoundError(`tenant ${tenantId}`);
      // One label key asked for with two values: no device carries both.
      if (query.label === null) return { items: [], next_cursor: null };
      const online = query.status === undefined ? undefined : query.status === 'online';
      const rows = await devices.listByTenant(pool, {
        tenantId,
        limit: query.limit,
        after,
        ...(online === undefined ? {} : { online }),
        ...(query.label === undefined ? {} : { labels: query.label }),
      });
      return toPage(rows, query.limit, (row) => row.id, toDeviceView);
    },

    async update(actor: Actor, id: string, patch: DevicePatch): Promise<DeviceView> {
      const now = new Date(clock());
      const { row, committed } = await withTransaction(pool, async (db) => {
        const before = await findVisibleDevice(devices, db, actor, id, true);
        const kind = changeKindOf(before, patch);
        const updated = (await devices.update(db, id, patch, now)) as DeviceRow;
        await audit.record(
          db,
          actor,
          {
            action: 'device.update',
            objectType: 'device',
            objectId: id,
            tenantId: before.tenant_id,
            details: { fields: Object.keys(patch).sort(), ...(patch.disabled !== undefined ? { disabled: patch.disabled } : {}) },
          },
          now,
        );
        const committed = kind ? await deps.changes.record(db, [{ kind, device_id: id, tenant_id: before.tenant_id, at: now.toISOString() }]) : null;
        return { row: updated, committed };
      });
      await committed?.();
      return toDeviceView(row);
    },

    async delete(actor: Actor, id: string): Promise<void> {
      const now = new Date(clock());
      const committed = await withTransaction(pool, async (db) => {
        const device = await findVisibleDevice(devices, db, actor, id, true);
        await devices.delete(db, id);
        await audit.record(
          db,
          actor,
          { action: 'device.delete', objectType: 'device', objectId: id, tenantId: device.tenant_id },
          now,
        );
        return deps.changes.record(db, [{ kind: 'device_deleted', device_id: id, tenant_id: device.tenant_id, at: now.toISOString() }]);
      });
      await committed();
    },
  };
}

export type DeviceService = ReturnType<typeof createDeviceService>;
