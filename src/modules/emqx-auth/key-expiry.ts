import type { Clock } from '../../lib/clock.js';
import { createPeriodic, type Periodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { SessionStore } from '../sessions/session-store.js';
import type { SessionKicker } from './session-kicker.js';
import type { VerificationRepository } from './verification-repository.js';

/** How often each replica looks for keys whose not_after has come. */
export const KEY_EXPIRY_SWEEP_INTERVAL_MS = 1000;
const CLAIM_BATCH = 100;

export type SessionEnding = 'kicked' | 'not_found' | 'failed' | 'not_connected' | 'other_credential';

export interface KeyExpirySweeper extends Periodic {
  /** Ends the sessions of the keys due now; returns what became of each. */
  sweep(): Promise<SessionEnding[]>;
}

/**
 * A key that gets a not_after (a rotation's grace period, or an expiry set at
 * issue) ends the sessions opened with it at that time. A session that
 * authenticated once the key had a not_after was told so by EMQX's
 * `expire_at`; one that authenticated before was not, so it is disconnected
 * through EMQX's REST API when the key's time comes — at once for a grace of
 * 0. Every replica sweeps; Postgres hands each due key to one of them, and
 * the claim is in Postgres, so a restart loses nothing. A device that has
 * already reconnected with another key (or its PSK) is left alone; one whose
 * session's credential was not recorded (takeover policy) is kicked, as a
 * needless reconnect is the safe mistake.
 */
export function createKeyExpirySweeper(deps: {
  repository: Pick<VerificationRepository, 'claimExpiredKeys' | 'releaseExpiredKey'>;
  sessions: Pick<SessionStore, 'get'>;
  kicker: Pick<SessionKicker, 'kickDevice'>;
  clock: Clock;
  log: PeriodicLogger;
  onEnded?: (ending: SessionEnding) => void;
  intervalMs?: number;
}): KeyExpirySweeper {
  const { repository, sessions, kicker, clock, log } = deps;

  async function endSessions(keyId: string, deviceId: string): Promise<SessionEnding> {
    const session = await sessions.get(deviceId).catch(() => undefined);
    if (session && !session.connected) return 'not_connected';
    const credential = session?.credential;
    if (credential && !(credential.kind === 'key' && credential.keyId === keyId)) return 'other_credential';
    const result = await kicker.kickDevice(deviceId, 'key_expired');
    // Tried again at the next sweep rather than leaving the session open.
    if (result === 'failed') await repository.releaseExpiredKey(keyId);
    return result;
  }

  async function sweep(): Promise<SessionEnding[]> {
    const endings: SessionEnding[] = [];
    for (;;) {
      const due = await repository.claimExpiredKeys(new Date(clock()), CLAIM_BATCH);
      for (const { keyId, deviceId } of due) {
        const ending = await endSessions(keyId, deviceId);
        deps.onEnded?.(ending);
        endings.push(ending);
      }
      if (due.length < CLAIM_BATCH) return endings;
    }
  }

  return { sweep, ...createPeriodic('key expiry sweep', sweep, deps.intervalMs ?? KEY_EXPIRY_SWEEP_INTERVAL_MS, log) };
}
