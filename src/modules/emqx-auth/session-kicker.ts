import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { EmqxApi } from '../../infra/emqx-api.js';
import type { CredentialChange } from '../../lib/credential-change.js';
import type { AuthMetrics } from './auth-metrics.js';

export interface SessionKicker {
  /** Disconnects the device named by the change, once across all replicas. */
  kick(change: CredentialChange): Promise<'kicked' | 'not_found' | 'skipped' | 'failed'>;
  /**
   * Disconnects the device now, for `why` (logged); the caller has made sure
   * no other replica does it too.
   */
  kickDevice(deviceId: string, why: string): Promise<'kicked' | 'not_found' | 'failed'>;
}

export interface KickerLogger {
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
}

/**
 * Every replica receives every change signal; a claim per change
 * (`kick:{digest of the change}`, SET NX, 10 min) lets one of them call EMQX.
 * If the claim cannot be taken because Redis is failing, the replica kicks
 * anyway: a second DELETE is harmless (404), a missing one leaves a revoked
 * device connected. A key revocation kicks the device whichever key its live
 * session used: the credential is recorded only under the reject policy, and
 * a needless reconnect is the safe error.
 */
export function createSessionKicker(deps: {
  emqx: Pick<EmqxApi, 'kickClient'>;
  redis: Redis;
  keyPrefix: string;
  metrics: Pick<AuthMetrics, 'kicks'>;
  log: KickerLogger;
  retryDelaysMs?: readonly number[];
}): SessionKicker {
  const { emqx, redis, keyPrefix, metrics, log } = deps;
  const retryDelaysMs = deps.retryDelaysMs ?? [500, 2000];
  const claimKey = (change: CredentialChange) =>
    `${keyPrefix}kick:${createHash('sha256')
      .update(JSON.stringify([change.kind, change.device_id, change.key_id ?? '', change.at]))
      .digest('base64url')}`;

  // The other replicas stood down, so a brief EMQX hiccup must not lose the kick.
  async function kickDevice(deviceId: string, why: string): Promise<'kicked' | 'not_found' | 'failed'> {
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await emqx.kickClient(deviceId);
        metrics.kicks.inc({ result });
        log.info({ deviceId, why, result }, 'kicked session');
        return result;
      } catch (error) {
        if (attempt < retryDelaysMs.length + 1) {
          await sleep(retryDelaysMs[attempt - 1] ?? 0);
          continue;
        }
        metrics.kicks.inc({ result: 'failed' });
        log.warn({ deviceId, why, err: error instanceof Error ? error.message : String(error) }, 'could not kick session');
        return 'failed';
      }
    }
  }

  return {
    async kick(change) {
      let claimed = true;
      try {
        claimed = (await redis.set(claimKey(change), '1', 'EX', 600, 'NX')) === 'OK';
      } catch {
        claimed = true;
      }
      if (!claimed) {
        metrics.kicks.inc({ result: 'skipped' });
        return 'skipped';
      }
      return kickDevice(change.device_id, change.kind);
    },
    kickDevice,
  };
}
