import { z } from 'zod';
import { isDeviceId } from '../../lib/device-id.js';
import type { EmqxEvent, EventHandler } from '../emqx-events/events-routes.js';
import type { SessionStore } from './session-store.js';

// EMQX renders undefined values as the string "undefined" (emqx-contract.md §C),
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

/**
 * `client.connected` / `client.disconnected` → session state. Events of
 * clients that are not devices, and events too malformed to order, are
 * acknowledged and dropped (a retry would not make them usable); a Redis
 * failure asks EMQX to retry.
 */
export function createSessionEventHandlers(deps: { sessions: SessionStore; log: SessionEventsLogger }) {
  const { sessions, log } = deps;

  const connected: EventHandler = async (event: EmqxEvent) => {
    const parsed = connectedSchema.safeParse(event);
    if (!parsed.success) {
      log.warn({ event: event.event }, 'dropping a client.connected event without clientid or connected_at');
      return { kind: 'handled' };
    }
    const { clientid, connected_at, peername, proto_ver } = parsed.data;
    if (!isDeviceId(clientid)) return { kind: 'handled' };
    try {
      await sessions.recordConnected(clientid, {
        connectedAt: connected_at,
        peer: peername ?? '',
        protoVer: proto_ver === undefined ? '' : String(proto_ver),
      });
      return { kind: 'handled' };
    } catch {
      return { kind: 'retry', reason: 'session_store_unavailable' };
    }
  };

  const disconnected: EventHandler = async (event: EmqxEvent) => {
    const parsed = disconnectedSchema.safeParse(event);
    if (!parsed.success) {
      log.warn({ event: event.event }, 'dropping a client.disconnected event without clientid or timestamps');
      return { kind: 'handled' };
    }
    const { clientid, connected_at, disconnected_at, reason } = parsed.data;
    if (!isDeviceId(clientid)) return { kind: 'handled' };
    try {
      await sessions.recordDisconnected(clientid, {
        connectedAt: connected_at,
        disconnectedAt: disconnected_at,
        reason: reason ?? 'unknown',
      });
      return { kind: 'handled' };
    } catch {
      return { kind: 'retry', reason: 'session_store_unavailable' };
    }
  };

  return { 'client.connected': connected, 'client.disconnected': disconnected };
}
