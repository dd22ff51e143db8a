export interface PeriodicLogger {
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
}

export interface Periodic {
  start(): void;
  /** Stops scheduling and waits for a run in progress. */
  stop(): Promise<void>;
}

/**
 * Runs `task` every `intervalMs`, counted from the end of the previous run,
 * so runs never overlap. A failing task is logged once when it starts failing
 * and once when it recovers, not once per interval.
 */
export function createPeriodic(what: string, task: () => Promise<unknown>, intervalMs: number, log: PeriodicLogger): Periodic {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;
  let failing = false;

  async function tick() {
    try {
      await task();
      if (failing) log.info({}, `${what} recovered`);
      failing = false;
    } catch (error) {
      if (!failing) log.warn({ err: (error as Error).message }, `${what} failed; retrying every interval`);
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
