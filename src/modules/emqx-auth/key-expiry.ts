import type { Clock } from '../../lib/clock.js';
import { createPeriodic, type Periodic, type PeriodicLogger } from '../../lib/periodic.js';

/** How often each replica looks for keys whose not_after has come. */
export const KEY_EXPIRY_SWEEP_INTERVAL_MS = 1000;
const CLAIM_BATCH = 100;

export interface KeyExpirySweeper extends Periodic {
  /** Queues the kicks of the keys due now; returns how many. */
  sweep(): Promise<number>;
}

/**
 * A key that gets a not_after (a rotation's grace period, or an expiry set at
 * issue) ends the sessions opened with it at that time. A session that
 * authenticated once the key had a not_after was told so by EMQX's
 * `expire_at`; one that authenticated before was not, so it is disconnected
 * through EMQX's REST API when the key's time comes — at once for a grace of
 * 0. Every replica sweeps; Postgres hands each due key to one of them, which
 * queues its kick with the other effects of changes (retried until EMQX
 * confirms, across restarts). The kick leaves alone a device that already
 * reconnected with another key or its PSK.
 */
export function createKeyExpirySweeper(deps: {
  queueKicks(now: Date, limit: number): Promise<number>;
  /** Told when kicks were queued, so they go out now rather than at the queue's next look. */
  queued(): void;
  clock: Clock;
  log: PeriodicLogger;
  intervalMs?: number;
}): KeyExpirySweeper {
  async function sweep(): Promise<number> {
    let total = 0;
    for (;;) {
      const queued = await deps.queueKicks(new Date(deps.clock()), CLAIM_BATCH);
      total += queued;
      if (queued < CLAIM_BATCH) break;
    }
    if (total > 0) deps.queued();
    return total;
  }

  return { sweep, ...createPeriodic('key expiry sweep', sweep, deps.intervalMs ?? KEY_EXPIRY_SWEEP_INTERVAL_MS, deps.log) };
}
