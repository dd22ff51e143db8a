import type { Pool } from 'pg';
import { withTransaction, type Queryable } from '../../infra/transaction.js';
import { displayPrefix, generateApiKey, isKeyId } from '../../lib/api-key.js';
import type { Clock } from '../../lib/clock.js';
import { BadRequestError, ConflictError, NotFoundError } from '../../lib/errors.js';
import { parseCursor, toPage, type Page } from '../../lib/pagination.js';
import type { KeyDigest } from '../../lib/key-digest.js';
import type { PasswordHasher } from '../../lib/password-hasher.js';
import type { Actor } from '../../lib/actor.js';
import type { CredentialChangeKind } from '../../lib/credential-change.js';
import type { AuditRepository } from '../audit/audit-repository.js';
import type { ChangeRecorder } from '../changes/change-recorder.js';
import type { DeviceRepository } from '../devices/device-repository.js';
import { findVisibleDevice } from '../devices/device-service.js';
import type { CredentialRepository, DeviceKeyRow } from './credential-repository.js';

/** A device may hold this many usable keys at once: keys in a rotation's grace period count until it ends. */
export const MAX_USABLE_KEYS = 10;

export type KeyState = 'active' | 'expiring' | 'expired' | 'revoked';

export interface KeyView {
  id: string;
  display_prefix: string;
  label: string | null;
  state: KeyState;
  created_at: string;
  not_after: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

export function keyState(row: Pick<DeviceKeyRow, 'revoked_at' | 'not_after'>, now: number): KeyState {
  if (row.revoked_at) return 'revoked';
  if (row.not_after) return row.not_after.getTime() <= now ? 'expired' : 'expiring';
  return 'active';
}

function toKeyView(row: DeviceKeyRow, now: number): KeyView {
  return {
    id: row.id,
    display_prefix: displayPrefix(row.id),
    label: row.label,
    state: keyState(row, now),
    created_at: row.created_at.toISOString(),
    not_after: row.not_after?.toISOString() ?? null,
    revoked_at: row.revoked_at?.toISOString() ?? null,
    last_used_at: row.last_used_at?.toISOString() ?? null,
  };
}

export interface CredentialServiceDeps {
  pool: Pool;
  devices: Pick<DeviceRepository, 'findById'>;
  credentials: CredentialRepository;
  audit: AuditRepository;
  /** PSKs: people choose them, so they get argon2id. */
  hasher: Pick<PasswordHasher, 'hash'>;
  /** API keys: generated with 256 random bits, stored as a keyed digest. */
  keyDigest: Pick<KeyDigest, 'digest'>;
  changes: ChangeRecorder;
  clock: Clock;
}

export function createCredentialService(deps: CredentialServiceDeps) {
  const { pool, devices, credentials, audit, hasher, keyDigest, clock } = deps;

  const record = (db: Queryable, kind: CredentialChangeKind, device: { id: string; tenant_id: string }, at: Date, keyId?: string) =>
    deps.changes.record(db, [{ kind, device_id: device.id, tenant_id: device.tenant_id, ...(keyId ? { key_id: keyId } : {}), at: at.toISOString() }]);

  /** Every path that makes a key checks here, on the locked device, so the limit holds under concurrent requests too. */
  async function assertRoomForKey(db: Queryable, deviceId: string, now: Date) {
    const usable = await credentials.countUsableKeys(db, deviceId, now);
    if (usable >= MAX_USABLE_KEYS) {
      throw new ConflictError(
        `device ${deviceId} already has ${usable} usable keys, the limit is ${MAX_USABLE_KEYS} (keys in a rotation's grace period count until it ends); revoke one first`,
        'too_many_keys',
      );
    }
  }

  return {
    /** Issues a key; the full key is in the answer and nowhere else, ever. */
    async issueKey(actor: Actor, deviceId: string, input: { label?: string | null; not_after?: string | null }) {
      const now = new Date(clock());
      const notAfter = input.not_after ? new Date(input.not_after) : null;
      if (notAfter && notAfter.getTime() <= now.getTime()) {
        throw new BadRequestError('body.not_after: must be in the future', 'validation_failed');
      }
      const generated = generateApiKey();
      const digest = keyDigest.digest(generated.key);
      const row = await withTransaction(pool, async (db) => {
        const device = await findVisibleDevice(devices, db, actor, deviceId, true);
        await assertRoomForKey(db, deviceId, now);
        const created = await credentials.insertKey(db, {
          id: generated.keyId,
          deviceId,
          digest,
          label: input.label ?? null,
          notAfter,
          at: now,
        });
        await audit.record(
          db,
          actor,
          {
            action: 'key.create',
            objectType: 'device_key',
            objectId: created.id,
            tenantId: device.tenant_id,
            details: { device_id: deviceId, label: created.label, not_after: created.not_after?.toISOString() ?? null },
          },
          now,
        );
        return created;
      });
      return { ...toKeyView(row, now.getTime()), key: generated.key };
    },

    /**
     * Issues a new key and lets the device's other usable keys expire after the
     * grace period, so a fleet can move to the new key without downtime.
     */
    async rotateKeys(actor: Actor, deviceId: string, input: { grace_period_s: number; label?: string | null }) {
      const now = new Date(clock());
      const graceEnd = new Date(now.getTime() + input.grace_period_s * 1000);
      const generated = generateApiKey();
      const digest = keyDigest.digest(generated.key);
      const { row, expiring, committed } = await withTransaction(pool, async (db) => {
        const device = await findVisibleDevice(devices, db, actor, deviceId, true);
        const expiring = await credentials.expireUsableKeys(db, deviceId, now, graceEnd);
        // The keys just given a grace period still authenticate until it ends, so they count.
        await assertRoomForKey(db, deviceId, now);
        const created = await credentials.insertKey(db, {
          id: generated.keyId,
          deviceId,
          digest,
          label: input.label ?? null,
          notAfter: null,
          at: now,
        });
        await audit.record(
          db,
          actor,
          {
            action: 'key.rotate',
            objectType: 'device_key',
            objectId: created.id,
            tenantId: device.tenant_id,
            details: { device_id: deviceId, grace_period_s: input.grace_period_s, expiring_key_ids: expiring, not_after: graceEnd.toISOString() },
          },
          now,
        );
        return { row: created, expiring, committed: await record(db, 'keys_rotated', device, now) };
      });
      await committed();
      return { ...toKeyView(row, now.getTime()), key: generated.key, expiring_key_ids: expiring, previous_keys_not_after: graceEnd.toISOString() };
    },

    async listKeys(actor: Actor, deviceId: string, query: { limit: number; cursor?: string }): Promise<Page<KeyView>> {
      const after = parseCursor(query.cursor, isKeyId);
      await findVisibleDevice(devices, pool, actor, deviceId);
      const rows = await credentials.listKeys(pool, { deviceId, limit: query.limit, after });
      const now = clock();
      return toPage(rows, query.limit, (row) => row.id, (row) => toKeyView(row, now));
    },

    /** Revokes now. Revoking a revoked key is a no-op (204 again, no second audit entry). */
    async revokeKey(actor: Actor, deviceId: string, keyId: string): Promise<void> {
      const now = new Date(clock());
      const committed = await withTransaction(pool, async (db) => {
        const device = await findVisibleDevice(devices, db, actor, deviceId, true);
        const result = await credentials.revokeKey(db, deviceId, keyId, now);
        if (!result) throw new NotFoundError(`key ${keyId}`);
        if (result.alreadyRevoked) return null;
        await audit.record(
          db,
          actor,
          { action: 'key.revoke', objectType: 'device_key', objectId: keyId, tenantId: device.tenant_id, details: { device_id: deviceId } },
          now,
        );
        return record(db, 'key_revoked', device, now, keyId);
      });
      await committed?.();
    },

    async setPsk(actor: Actor, deviceId: string, psk: string): Promise<{ replaced: boolean }> {
      const now = new Date(clock());
      const hash = await hasher.hash(psk);
      const { replaced, committed } = await withTransaction(pool, async (db) => {
        const device = await findVisibleDevice(devices, db, actor, deviceId, true);
        const replaced = await credentials.upsertPsk(db, deviceId, hash, now);
        await audit.record(
          db,
          actor,
          { action: replaced ? 'psk.replace' : 'psk.set', objectType: 'device_psk', objectId: deviceId, tenantId: device.tenant_id },
          now,
        );
        // A replaced PSK (often because it leaked) ends the sessions opened with the old one.
        return { replaced, committed: await record(db, replaced ? 'psk_replaced' : 'psk_set', device, now) };
      });
      await committed();
      return { replaced };
    },

    async deletePsk(actor: Actor, deviceId: string): Promise<void> {
      const now = new Date(clock());
      const committed = await withTransaction(pool, async (db) => {
        const device = await findVisibleDevice(devices, db, actor, deviceId, true);
        if (!(await credentials.deletePsk(db, deviceId))) throw new NotFoundError(`PSK of device ${deviceId}`);
        await audit.record(
          db,
          actor,
          { action: 'psk.delete', objectType: 'device_psk', objectId: deviceId, tenantId: device.tenant_id },
          now,
        );
        return record(db, 'psk_deleted', device, now);
      });
      await committed();
    },
  };
}

export type CredentialService = ReturnType<typeof createCredentialService>;
