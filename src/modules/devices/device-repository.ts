import { afterKey, CREATED_US } from '../../infra/sql.js';
import type { Queryable } from '../../infra/transaction.js';
import type { DecoderConfig } from '../../lib/decoder-config.js';
import type { DeviceLabels } from '../../lib/device-labels.js';
import { isDeviceId } from '../../lib/identifiers.js';
import type { PageKey } from '../../lib/pagination.js';

export interface DeviceRow {
  id: string;
  tenant_id: string;
  name: string;
  disabled: boolean;
  offline_threshold_s: number;
  decoder: DecoderConfig | null;
  labels: DeviceLabels;
  created_at: Date;
  updated_at: Date;
  created_us: string;
  /** Last known liveness (the live state is in Redis). */
  online: boolean;
  last_seen_at: Date | null;
}

/** What the hot paths (authn, authz, ingest, liveness) need to know about a device. */
export interface DeviceRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly disabled: boolean;
  readonly offlineThresholdS: number;
  readonly decoder: DecoderConfig | null;
  /**
   * Changes with every change to what may authenticate as the device (a bigint
   * as text, never reused): a cached verification made under another version is void.
   */
  readonly credentialVersion: string;
}

export interface DevicePatch {
  name?: string;
  disabled?: boolean;
  offline_threshold_s?: number;
  decoder?: DecoderConfig | null;
  labels?: DeviceLabels;
}

/** A device to create. */
export interface NewDevice {
  id: string;
  tenantId: string;
  name: string;
  disabled: boolean;
  offlineThresholdS: number;
  decoder: DecoderConfig | null;
  labels: DeviceLabels;
}

/**
 * The expression migration 0007 indexes (devices_labels): a device's labels
 * under its tenant's id. A selector is matched against it, so the index and
 * its statistics serve the query.
 */
const LABELS_IN_TENANT = `jsonb_insert('{}', ARRAY[tenant_id], labels)`;

const COLUMNS = `id, tenant_id, name, disabled, offline_threshold_s, decoder, labels, created_at, updated_at, ${CREATED_US}, online, last_seen_at`;

/** Reads and writes of devices: the admin side's rows, and the hot paths' records (cached by the DeviceDirectory). */
export function createDeviceRepository() {
  return {
    /** The hot paths' view of the devices among `ids` that exist; ids that are not device ids are simply not found. */
    async findRecords(db: Queryable, ids: readonly string[]): Promise<Map<string, DeviceRecord>> {
      const wanted = ids.filter(isDeviceId);
      const found = new Map<string, DeviceRecord>();
      if (wanted.length === 0) return found;
      const { rows } = await db.query<Pick<DeviceRow, 'id' | 'tenant_id' | 'disabled' | 'offline_threshold_s' | 'decoder'> & { credential_version: string }>(
        'SELECT id, tenant_id, disabled, offline_threshold_s, decoder, credential_version::text AS credential_version FROM devices WHERE id = ANY($1::uuid[])',
        [wanted],
      );
      for (const row of rows) {
        found.set(row.id, {
          id: row.id,
          tenantId: row.tenant_id,
          disabled: row.disabled,
          offlineThresholdS: row.offline_threshold_s,
          decoder: row.decoder,
          credentialVersion: row.credential_version,
        });
      }
      return found;
    },

    /** Null when the id is taken. */
    async insert(db: Queryable, device: NewDevice & { at: Date }): Promise<DeviceRow | null> {
      const { rows } = await db.query<DeviceRow>(
        `INSERT INTO devices (id, tenant_id, name, disabled, offline_threshold_s, decoder, labels, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
        [
          device.id,
          device.tenantId,
          device.name,
          device.disabled,
          device.offlineThresholdS,
          device.decoder === null ? null : JSON.stringify(device.decoder),
          JSON.stringify(device.labels),
          device.at,
        ],
      );
      return rows[0] ?? null;
    },

    /**
     * Creates the devices whose ids are free, in one statement, and returns
     * the ids it created: an id missing from the answer was taken.
     */
    async insertMany(db: Queryable, devices: readonly NewDevice[], at: Date): Promise<Set<string>> {
      const { rows } = await db.query<{ id: string }>(
        `INSERT INTO devices (id, tenant_id, name, disabled, offline_threshold_s, decoder, labels, created_at, updated_at)
         SELECT id, "tenantId", name, disabled, "offlineThresholdS", decoder, labels, $2, $2
           FROM jsonb_to_recordset($1::jsonb)
             AS d(id uuid, "tenantId" text, name text, disabled boolean, "offlineThresholdS" integer, decoder jsonb, labels jsonb)
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [JSON.stringify(devices), at],
      );
      return new Set(rows.map((row) => row.id));
    },

    async findById(db: Queryable, id: string, lock = false): Promise<DeviceRow | null> {
      const { rows } = await db.query<DeviceRow>(
        `SELECT ${COLUMNS} FROM devices WHERE id = $1${lock ? ' FOR UPDATE' : ''}`,
        [id],
      );
      return rows[0] ?? null;
    },

    async listByTenant(
      db: Queryable,
      page: { tenantId: string; limit: number; after: PageKey | undefined; online?: boolean; labels?: DeviceLabels },
    ): Promise<DeviceRow[]> {
      const values: unknown[] = [page.limit + 1, page.tenantId];
      let filters = '';
      if (page.online !== undefined) {
        values.push(page.online);
        filters += ` AND online = $${values.length}`;
      }
      if (page.labels !== undefined && Object.keys(page.labels).length > 0) {
        values.push(JSON.stringify({ [page.tenantId]: page.labels }));
        filters += ` AND ${LABELS_IN_TENANT} @> $${values.length}::jsonb`;
      }
      const { rows } = await db.query<DeviceRow>(
        `SELECT ${COLUMNS} FROM devices
          WHERE tenant_id = $2${filters} AND ${afterKey(values, page.after, '::uuid')}
          ORDER BY created_at, id LIMIT $1`,
        values,
      );
      return rows;
    },

    async update(db: Queryable, id: string, patch: DevicePatch, at: Date): Promise<DeviceRow | null> {
      const sets: string[] = [];
      const values: unknown[] = [id, at];
      const set = (column: string, value: unknown) => {
        values.push(value);
        sets.push(`${column} = $${values.length}`);
      };
      if (patch.name !== undefined) set('name', patch.name);
      if (patch.disabled !== undefined) set('disabled', patch.disabled);
      if (patch.offline_threshold_s !== undefined) set('offline_threshold_s', patch.offline_threshold_s);
      if (patch.decoder !== undefined) set('decoder', patch.decoder === null ? null : JSON.stringify(patch.decoder));
      if (patch.labels !== undefined) set('labels', JSON.stringify(patch.labels));
      const { rows } = await db.query<DeviceRow>(
        `UPDATE devices SET ${[...sets, 'updated_at = $2'].join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`,
        values,
      );
      return rows[0] ?? null;
    },

    async delete(db: Queryable, id: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM devices WHERE id = $1', [id]);
      return (rowCount ?? 0) > 0;
    },
  };
}

export type DeviceRepository = ReturnType<typeof createDeviceRepository>;
