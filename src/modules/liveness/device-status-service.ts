import type { Queryable } from '../../infra/transaction.js';
import type { Actor } from '../../lib/actor.js';
import type { DeviceRepository } from '../devices/device-repository.js';
import { findVisibleDevice } from '../devices/device-service.js';
import type { LivenessService } from './liveness-service.js';
import type { SessionLookup } from './session-lookup.js';

export interface DeviceStatusView {
  device_id: string;
  online: boolean;
  connected: boolean;
  last_seen_at: string | null;
  connected_at: string | null;
  disconnected_at: string | null;
  disconnect_reason: string | null;
  offline_threshold_s: number;
}

export interface DeviceStatusServiceDeps {
  pool: Queryable;
  devices: Pick<DeviceRepository, 'findById'>;
  liveness: Pick<LivenessService, 'read'>;
  sessions: SessionLookup;
  log: { warn(object: object, message: string): void };
}

export function createDeviceStatusService({ pool, devices, liveness, sessions, log }: DeviceStatusServiceDeps) {
  return {
    async get(actor: Actor, deviceId: string): Promise<DeviceStatusView> {
      const row = await findVisibleDevice(devices, pool, actor, deviceId);
      const [live, session] = await Promise.all([
        liveness.read(row.id).catch((error: unknown) => {
          // Postgres keeps the last known status: good enough while Redis is away.
          log.warn({ err: (error as Error).message, device_id: row.id }, 'live status unavailable; answering the stored one');
          return undefined;
        }),
        sessions.get(row.id),
      ]);
      const storedSeen = row.last_seen_at?.getTime() ?? null;
      const seen = live ? Math.max(live.seenMs, storedSeen ?? 0) : storedSeen;
      return {
        device_id: row.id,
        online: live === undefined ? row.online : (live?.online ?? false),
        connected: session?.connected ?? false,
        last_seen_at: seen === null ? null : new Date(seen).toISOString(),
        connected_at: session?.connected_at ?? null,
        disconnected_at: session?.disconnected_at ?? null,
        disconnect_reason: session?.disconnect_reason ?? null,
        offline_threshold_s: row.offline_threshold_s,
      };
    },
  };
}

export type DeviceStatusService = ReturnType<typeof createDeviceStatusService>;
