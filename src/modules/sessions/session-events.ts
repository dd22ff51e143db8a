import { z } from 'zod';
import { isDeviceId } from '../../lib/identifiers.js';
import type { DeviceEventProducer } from '../device-events/device-event-producer.js';
import type { DeviceDirectory } from '../devices/device-directory.js';
import { HANDLED, type EmqxEvent, type EventHandler } from '../../lib/emqx-event.js';
import type { SessionState, SessionStore } from './session-store.js';

// EMQX renders undefined values as the string "undefined" (docs/emqx-contract.md §C),
// so optional text fields accept any string and numbers may arrive as strings.
const millis = z.coerce.number().int().nonnegative();
const connectedSchema = z.looseObject({
  clientid: z.string(),
  connected_at: millis,
  peername: z.string().max(256).optional(),
  proto_ver: z.union([z.string().max(16), z.number()]).optional(),
});
const disconnectedSchema = z.looseObject({
  clientid: z.string(),
  connected_at: millis,
  disconnected_at: millis,
  reason: z.string().max(128).optional(),
});

export interface SessionEventsLogger {
  warn(object: object, message: string): void;
}

export interface SessionEventsDeps {
  sessions: SessionStore;
  devices: Pick<DeviceDirectory, 'get'>;
  deviceEvents: Pick<DeviceEventProducer, 'produce'>;
  log: SessionEventsLogger;
}

/**
 * `client.connected` / `client.disconnected` → session state. Events of
 * clients that are not devices, and events too malformed to order, are
 * acknowledged and dropped (a retry would not make them usable); a Redis
 * failure asks EMQX to retry.
 *
 * After the store takes an event, `connected` / `disconnected` goes to
 * device.events.{tenant}. A failed produce asks EMQX to retry; the retried
 * event is a repeat the store does not apply again, so it is emitted when it
 * still describes the stored connection (at least once, never for a stale event).
 */
export function createSessionEventHandlers(deps: SessionEventsDeps) {
  const { sessions, log } = deps;

  async function emit(
    type: 'connected' | 'disconnected',
    deviceId: string,
    applied: boolean,
    isCurrent: (state: SessionState) => boolean,
    atMs: number,
    reason?: string,
  ) {
    if (!applied) {
      const state = await sessions.get(deviceId);
      if (!state || !isCurrent(state)) return;
    }
    const device = await deps.devices.get(deviceId);
    if (!device) return;
    await deps.deviceEvents.produce([
      {
        type,
        tenant_id: device.tenantId,
        device_id: deviceId,
        at: new Date(atMs).toISOString(),
        ...(reason !== undefined ? { reason } : {}),
      },
    ]);
  }

  const connected: EventHandler = async (event: EmqxEvent) => {
    const parsed = connectedSchema.safeParse(event);
    if (!parsed.success) {
      log.warn({ event: event.event }, 'dropping a client.connected event without clientid or connected_at');
      return HANDLED;
    }
    const { clientid, connected_at, peername, proto_ver } = parsed.data;
    if (!isDeviceId(clientid)) return HANDLED;
    let applied: boolean;
    try {
      applied = await sessions.recordConnected(clientid, {
        connectedAt: connected_at,
        peer: peername ?? '',
        protoVer: proto_ver === undefined ? '' : String(proto_ver),
      });
    } catch {
      return { kind: 'retry', reason: 'session_store_unavailable' };
    }
    try {
      await emit('connected', clientid, applied, (s) => s.connected && s.connectedAt === connected_at, connected_at);
    } catch {
      return { kind: 'retry', reason: 'device_event_not_produced' };
    }
    return HANDLED;
  };

  const disconnected: EventHandler = async (event: EmqxEvent) => {
    const parsed = disconnectedSchema.safeParse(event);
    if (!parsed.success) {
      log.warn({ event: event.event }, 'dropping a client.disconnected event without clientid or timestamps');
      return HANDLED;
    }
    const { clientid, connected_at, disconnected_at, reason } = parsed.data;
    if (!isDeviceId(clientid)) return HANDLED;
    let applied: boolean;
    try {
      applied = await sessions.recordDisconnected(clientid, {
        connectedAt: connected_at,
        disconnectedAt: disconnected_at,
        reason: reason ?? 'unknown',
      });
    } catch {
      return { kind: 'retry', reason: 'session_store_unavailable' };
    }
    try {
      await emit(
        'disconnected',
        clientid,
        applied,
        (s) => !s.connected && s.connectedAt === connected_at && s.disconnectedAt === disconnected_at,
        disconnected_at,
        reason ?? 'unknown',
      );
    } catch {
      return { kind: 'retry', reason: 'device_event_not_produced' };
    }
    return HANDLED;
  };

  return { 'client.connected': connected, 'client.disconnected': disconnected };
}
