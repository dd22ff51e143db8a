import type { EmqxApi } from '../../infra/emqx-api.js';
import type { Clock } from '../../lib/clock.js';
import type { ConnectClaim, SessionCredential, SessionStore } from '../sessions/session-store.js';

export type DuplicateClientPolicy = 'reject' | 'takeover';

/**
 * `ok`: let the connect through; `duplicate`: a live session exists;
 * `connecting`: another CONNECT of the device holds the claim right now;
 * `unknown`: cannot tell now (EMQX could not be asked).
 */
export type DuplicateCheck = 'ok' | 'duplicate' | 'connecting' | 'unknown';

export interface DuplicateClientGuard {
  /**
   * `credential` is what the CONNECT authenticated with; the session it opens
   * records it. Answered at once under `takeover`, which has nothing to ask.
   */
  check(deviceId: string, credential: SessionCredential): DuplicateCheck | Promise<DuplicateCheck>;
  /** Gives up the claim an `ok` check took (the CONNECT is refused after all). Never rejects. */
  release(deviceId: string): Promise<void>;
}

export interface DuplicateGuardLogger {
  warn(object: object, message: string): void;
}

/**
 * The `reject` policy (docs/emqx-contract.md §E): EMQX always lets a newcomer take
 * over a client id, so the only way to keep the first session is to deny the
 * second CONNECT at authentication.
 *  - A short Redis claim (SET NX) per device stops two concurrent CONNECTs from
 *    both passing; the connect/disconnect event that follows drops it.
 *  - Stored "connected" state is confirmed with EMQX before denying, so lost or
 *    reordered events never lock a device out; stale state is corrected.
 *  - Session state unreadable (Redis down) lets the already verified client
 *    through: the fallback is EMQX's own takeover, not a lock-out.
 */
export function createDuplicateClientGuard(deps: {
  policy: DuplicateClientPolicy;
  sessions: SessionStore;
  emqx: Pick<EmqxApi, 'getClient'>;
  clock: Clock;
  log: DuplicateGuardLogger;
  claimTtlMs?: number;
}): DuplicateClientGuard {
  const { policy, sessions, emqx, clock, log } = deps;
  const claimTtlMs = deps.claimTtlMs ?? 2000;

  return {
    check(deviceId, credential) {
      return policy === 'takeover' ? 'ok' : checkLive(deviceId, credential);
    },
    async release(deviceId) {
      if (policy === 'reject') await sessions.releaseConnecting(deviceId).catch(() => undefined);
    },
  };

  async function checkLive(deviceId: string, credential: SessionCredential): Promise<DuplicateCheck> {
    let claim: ConnectClaim;
    try {
      claim = await sessions.claimConnecting(deviceId, claimTtlMs, credential);
    } catch {
      return 'ok';
    }
    if (!claim.taken) return 'connecting';
    if (claim.connectedAt === null) return 'ok';

    let live: boolean;
    try {
      const client = await emqx.getClient(deviceId);
      live = client?.connected === true;
    } catch (error) {
      log.warn({ err: error instanceof Error ? error.message : String(error) }, 'cannot confirm a session with EMQX');
      await sessions.releaseConnecting(deviceId).catch(() => undefined);
      return 'unknown';
    }
    if (live) {
      await sessions.releaseConnecting(deviceId).catch(() => undefined);
      return 'duplicate';
    }
    await sessions.markStale(deviceId, claim.connectedAt, clock()).catch(() => false);
    return 'ok';
  }
}
