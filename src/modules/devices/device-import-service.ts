import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { withTransaction } from '../../infra/transaction.js';
import type { Actor } from '../../lib/actor.js';
import { generateApiKey } from '../../lib/api-key.js';
import type { Clock } from '../../lib/clock.js';
import type { DeviceLabels } from '../../lib/device-labels.js';
import { ConflictError, NotFoundError } from '../../lib/errors.js';
import { nameIds, repeatedIds } from '../../lib/identifiers.js';
import type { KeyDigest } from '../../lib/key-digest.js';
import type { AuditRepository } from '../audit/audit-repository.js';
import type { CredentialRepository } from '../credentials/credential-repository.js';
import { assertTenantVisible } from '../tenants/tenant-service.js';
import type { TenantRepository } from '../tenants/tenant-repository.js';
import type { DeviceRepository } from './device-repository.js';
import { DEFAULT_OFFLINE_THRESHOLD_S } from './device-service.js';

export const MAX_IMPORTED_DEVICES = 10_000;

export interface DeviceImportEntry {
  id?: string;
  name: string;
  labels?: DeviceLabels;
  offline_threshold_s?: number;
  /** Whether to issue the device an API key, shown in the answer only. */
  key?: boolean;
}

export interface ImportedDevice {
  id: string;
  key?: string;
}

export interface DeviceImportServiceDeps {
  pool: Pool;
  devices: Pick<DeviceRepository, 'insertMany'>;
  tenants: Pick<TenantRepository, 'lockById'>;
  credentials: Pick<CredentialRepository, 'insertKeys'>;
  audit: AuditRepository;
  keyDigest: Pick<KeyDigest, 'digest'>;
  clock: Clock;
}

/**
 * Onboarding a batch of devices in one request: all of them with their keys,
 * or none. Keys are keyed digests (no argon2), so ten thousand devices are
 * two INSERT statements and an audit row in one short transaction.
 */
export function createDeviceImportService(deps: DeviceImportServiceDeps) {
  const { pool, devices, credentials, audit, keyDigest, clock } = deps;

  return {
    async import(actor: Actor, tenantId: string, entries: readonly DeviceImportEntry[]): Promise<{ devices: ImportedDevice[] }> {
      assertTenantVisible(actor, tenantId);
      const ids = entries.map((entry) => entry.id ?? randomUUID());
      const repeated = repeatedIds(ids);
      if (repeated.length > 0) throw new ConflictError(`device ids given more than once: ${nameIds(repeated)}`, 'duplicate_device_ids');

      const keys = entries.map((entry) => (entry.key ? generateApiKey() : null));
      const keyRows = keys.flatMap((key, index) => (key ? [{ id: key.keyId, deviceId: ids[index] as string, digest: keyDigest.digest(key.key) }] : []));
      const now = new Date(clock());
      await withTransaction(pool, async (db) => {
        // Blocks a concurrent delete of the tenant until the devices are committed.
        if (!(await deps.tenants.lockById(db, tenantId, 'share'))) throw new NotFoundError(`tenant ${tenantId}`);
        const created = await devices.insertMany(
          db,
          entries.map((entry, index) => ({
            id: ids[index] as string,
            tenantId,
            name: entry.name,
            disabled: false,
            offlineThresholdS: entry.offline_threshold_s ?? DEFAULT_OFFLINE_THRESHOLD_S,
            decoder: null,
            labels: entry.labels ?? {},
          })),
          now,
        );
        if (created.size < ids.length) {
          const taken = ids.filter((id) => !created.has(id));
          // As for one device: a tenant-scoped token learns that it cannot use
          // the ids, not that another tenant holds them.
          if (actor.tenantId === null) throw new ConflictError(`devices already exist: ${nameIds(taken)}`, 'device_exists');
          throw new ConflictError(`device ids cannot be used: ${nameIds(taken)}; choose others or leave id out to have them generated`, 'device_id_unavailable');
        }
        await credentials.insertKeys(db, keyRows, now);
        await audit.record(
          db,
          actor,
          {
            action: 'device.import',
            objectType: 'tenant',
            objectId: tenantId,
            tenantId,
            details: { devices: ids.length, keys: keyRows.length },
          },
          now,
        );
      });
      return { devices: ids.map((id, index) => (keys[index] ? { id, key: keys[index].key } : { id })) };
    },
  };
}

export type DeviceImportService = ReturnType<typeof createDeviceImportService>;
