import type { SessionStore } from '../sessions/session-store.js';

/** The MQTT session facts the status endpoint shows (kept by the session store). */
export interface SessionSnapshot {
  readonly connected: boolean;
  /** ISO-8601 times; null when not known. */
  readonly connected_at: string | null;
  readonly disconnected_at: string | null;
  readonly disconnect_reason: string | null;
}

export interface SessionLookup {
  /** The device's last recorded session, or null when none was recorded. */
  get(deviceId: string): Promise<SessionSnapshot | null>;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The session store's state, as the status endpoint shows it. */
export function sessionLookup(store: Pick<SessionStore, 'get'>): SessionLookup {
  return {
    async get(deviceId) {
      const state = await store.get(deviceId);
      if (!state) return null;
      return {
        connected: state.connected,
        connected_at: iso(state.connectedAt),
        disconnected_at: iso(state.disconnectedAt),
        disconnect_reason: state.reason,
      };
    },
  };
}
