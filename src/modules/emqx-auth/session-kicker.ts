import type { EmqxApi } from '../../infra/emqx-api.js';
import type { SessionStore } from '../sessions/session-store.js';
import type { AuthMetrics } from './auth-metrics.js';

/** What became of a device's session: ended now, already gone, or left alone (it uses another credential, or is not connected). */
export type KickOutcome = 'kicked' | 'not_found' | 'not_connected' | 'other_credential';

export interface KickRequest {
  readonly deviceId: string;
  /** Why (a change kind, or key_expired): logged and counted. */
  readonly reason: string;
  /**
   * Only the sessions opened with this key end (a key reaching its not_after
   * in a routine rotation): a device already reconnected with its new key, or
   * its PSK, is left alone. Absent: the device's session ends whatever it used.
   */
  readonly onlyKeyId?: string;
}

export interface SessionKicker {
  /** Ends the session through EMQX's REST API; throws when EMQX did not confirm it gone, to be tried again. */
  kick(request: KickRequest): Promise<KickOutcome>;
}

export interface KickerLogger {
  info(object: object, message: string): void;
}

/**
 * Disconnects a device's live MQTT session (`DELETE /api/v5/clients/{id}`:
 * 204 kicked, 404 already gone). A session's credential is known only when
 * the reject policy's connect claim recorded it; when it is unknown the
 * session ends all the same, as a needless reconnect is the safe mistake.
 */
export function createSessionKicker(deps: {
  emqx: Pick<EmqxApi, 'kickClient'>;
  sessions: Pick<SessionStore, 'get'>;
  metrics: Pick<AuthMetrics, 'kicks'>;
  log: KickerLogger;
}): SessionKicker {
  const { emqx, sessions, metrics, log } = deps;
  const counted = (request: KickRequest, result: KickOutcome | 'failed') => {
    metrics.kicks.inc({ reason: request.reason, result });
    return result;
  };

  async function leftAlone(deviceId: string, keyId: string): Promise<KickOutcome | null> {
    const session = await sessions.get(deviceId).catch(() => undefined);
    if (session && !session.connected) return 'not_connected';
    const credential = session?.credential;
    if (credential && !(credential.kind === 'key' && credential.keyId === keyId)) return 'other_credential';
    return null;
  }

  return {
    async kick(request) {
      if (request.onlyKeyId !== undefined) {
        const outcome = await leftAlone(request.deviceId, request.onlyKeyId);
        if (outcome) return counted(request, outcome) as KickOutcome;
      }
      let result: 'kicked' | 'not_found';
      try {
        result = await emqx.kickClient(request.deviceId);
      } catch (error) {
        counted(request, 'failed');
        throw error;
      }
      log.info({ deviceId: request.deviceId, why: request.reason, result }, 'kicked session');
      return counted(request, result) as KickOutcome;
    },
  };
}
