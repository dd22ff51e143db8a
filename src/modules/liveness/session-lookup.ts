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

/** For a deployment that records no sessions: every device reads as never connected. */
export const noRecordedSessions: SessionLookup = {
  get: () => Promise.resolve(null),
};
