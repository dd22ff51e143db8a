
export interface PeriodicLogger {
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
}

export interface Periodic {
  start(): void;
  /**
   * Runs the task now or, when a run is under way, once more right after it
   * (one run for every caller meanwhile). Resolves when a run that started
   * after the call has ended; rejects when that run fails, or when the
   * periodic was stopped before it could start. Works before `start()` too.
   */
  runNow(): Promise<void>;
  /** Stops scheduling and waits for a run in progress; no run starts after it. */
  stop(): Promise<void>;
}

/**
 * Runs `task` every `intervalMs`, counted from the end of the previous run,
 * and whenever asked to (`runNow`); runs never overlap. A failing task is
 * logged once when it starts failing and once when it recovers, not once per
 * interval.
 */
export function createPeriodic(what: string, task: () => Promise<unknown>, intervalMs: number, log: PeriodicLogger): Periodic {
  let state: 'idle' | 'started' | 'stopped' = 'idle';
  let timer: NodeJS.Timeout | undefined;
  /** The run under way, with what follows it; never rejects. */
  let running: Promise<void> | undefined;
  /** The callers that came while a run was under way: the next run is theirs. */
  let next: PromiseWithResolvers<void> | undefined;
  let failing = false;

  async function attempt() {
    try {
      await task();
    } catch (error) {
      if (!failing) log.warn({ err: (error as Error).message }, `${what} failed; retrying every interval`);
      failing = true;
      throw error;
    }
    if (failing) log.info({}, `${what} recovered`);
    failing = false;
  }

  function run(): Promise<void> {
    clearTimeout(timer);
    const result = attempt();
    running = result
      .catch(() => undefined)
      .then(() => {
        running = undefined;
        const waiting = next;
        next = undefined;
        if (!waiting) schedule();
        else if (state === 'stopped') waiting.reject(new Error(`${what} stopped`));
        else run().then(waiting.resolve, waiting.reject);
      });
    return result;
  }

  function runNow(): Promise<void> {
    if (state === 'stopped') return Promise.reject(new Error(`${what} stopped`));
    if (!running) return run();
    if (!next) {
      next = Promise.withResolvers<void>();
      // Handled here as well, so a caller that drops the promise does not crash the process: the failure is logged.
      next.promise.catch(() => undefined);
    }
    return next.promise;
  }

  function schedule() {
    if (state !== 'started') return;
    clearTimeout(timer);
    timer = setTimeout(() => void runNow().catch(() => undefined), intervalMs);
    timer.unref();
  }

  return {
    start() {
      if (state === 'started') return;
      state = 'started';
      // A run under way schedules the next when it ends.
      if (!running) schedule();
    },
    runNow,
    async stop() {
      state = 'stopped';
      clearTimeout(timer);
      await running;
    },
  };
}
