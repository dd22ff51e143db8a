import { createPeriodic, type Periodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { LivenessService } from './liveness-service.js';

/**
 * How often each replica copies pending last_seen values to Postgres: device
 * lists read it there, and writing it per message would cost a row update
 * per message.
 */
export const LAST_SEEN_PERSIST_INTERVAL_MS = 10_000;

export interface LivenessSweeperDeps {
  liveness: Pick<LivenessService, 'sweep' | 'persistLastSeen'>;
  /** Time between the end of one sweep and the start of the next. */
  intervalMs: number;
  /** How often pending last_seen values are written to Postgres (default LAST_SEEN_PERSIST_INTERVAL_MS). */
  persistIntervalMs?: number;
  log: PeriodicLogger;
}

/**
 * Runs the deadline sweep on this replica. Every replica runs one; the claim
 * in Redis decides which of them emits each transition.
 */
export function createLivenessSweeper({ liveness, intervalMs, persistIntervalMs = LAST_SEEN_PERSIST_INTERVAL_MS, log }: LivenessSweeperDeps): Periodic {
  let lastPersist = performance.now();
  return createPeriodic(
    'liveness sweep',
    async () => {
      await liveness.sweep();
      if (performance.now() - lastPersist >= persistIntervalMs) {
        lastPersist = performance.now();
        await liveness.persistLastSeen();
      }
    },
    intervalMs,
    log,
  );
}
