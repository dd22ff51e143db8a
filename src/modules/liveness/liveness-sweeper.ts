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
  log: { warn(object: object, message: string): void; info(object: object, message: string): void };
}

export interface LivenessSweeper {
  start(): void;
  /** Stops scheduling and waits for a sweep in progress. */
  stop(): Promise<void>;
}

/**
 * Runs the deadline sweep on this replica. Every replica runs one; the claim
 * in Redis decides which of them emits each transition.
 */
export function createLivenessSweeper({ liveness, intervalMs, persistIntervalMs = LAST_SEEN_PERSIST_INTERVAL_MS, log }: LivenessSweeperDeps): LivenessSweeper {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;
  let failing = false;
  let lastPersist = performance.now();

  async function tick() {
    try {
      await liveness.sweep();
      if (performance.now() - lastPersist >= persistIntervalMs) {
        lastPersist = performance.now();
        await liveness.persistLastSeen();
      }
      if (failing) log.info({}, 'liveness sweep recovered');
      failing = false;
    } catch (error) {
      // An outage would otherwise log once per interval.
      if (!failing) log.warn({ err: (error as Error).message }, 'liveness sweep failed; retrying every interval');
      failing = true;
    }
  }

  function schedule() {
    if (stopped) return;
    timer = setTimeout(() => {
      running = tick().finally(() => {
        running = undefined;
        schedule();
      });
    }, intervalMs);
    timer.unref();
  }

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      schedule();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
