import { Fifo } from './fifo.js';

/** The work would have waited longer than allowed; the caller answers at once instead. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor() {
    super('work queue full');
  }
}

export interface BoundedQueue {
  /**
   * Runs `work` when a slot frees up; rejects with QueueFullError when it would
   * not finish within `budgetMs` (default maxWaitMs).
   */
  run<T>(work: () => Promise<T>, budgetMs?: number): Promise<T>;
  /** Whether a job submitted now with this budget would be admitted (no side effects). */
  wouldAdmit(budgetMs?: number): boolean;
  /** Jobs waiting for a slot (not counting the running ones). */
  readonly waiting: number;
  readonly running: number;
}

export interface BoundedQueueOptions {
  concurrency: number;
  /** The longest a job may take from submission to completion, waiting included. */
  maxWaitMs: number;
  /** Milliseconds, monotonic enough for measuring waits. */
  now?: () => number;
  /** Starting guess of how long one job takes, refined as jobs finish. */
  initialJobMs?: number;
}

interface Waiting {
  start: () => void;
  fail: (error: Error) => void;
  deadline: number;
}

/**
 * A concurrency limit with a queue bounded by time rather than length. A job is
 * refused up front when the jobs ahead of it, plus its own run, would take
 * longer than maxWaitMs (estimated from a moving average of job durations), and
 * refused when its turn comes too late to finish in time anyway: a caller with
 * a 5 s budget is better served by a fast refusal than by a late answer.
 */
export function createBoundedQueue(options: BoundedQueueOptions): BoundedQueue {
  const { concurrency, maxWaitMs } = options;
  const now = options.now ?? (() => performance.now());
  let averageJobMs = options.initialJobMs ?? 50;
  let running = 0;
  const queue = new Fifo<Waiting>();

  const expectedWaitMs = () => (Math.floor(queue.length / concurrency) + (running >= concurrency ? 1 : 0)) * averageJobMs;
  // Job durations vary under load; planning with a margin keeps admitted jobs inside the budget.
  const plannedJobMs = () => averageJobMs * 1.25;
  const admits = (budgetMs: number) => running < concurrency || expectedWaitMs() + plannedJobMs() <= budgetMs;

  function next() {
    while (running < concurrency && queue.length > 0) {
      const job = queue.shift();
      if (!job) break;
      if (now() > job.deadline) job.fail(new QueueFullError());
      else job.start();
    }
  }

  return {
    get waiting() {
      return queue.length;
    },
    get running() {
      return running;
    },
    wouldAdmit: (budgetMs = maxWaitMs) => admits(budgetMs),
    run<T>(work: () => Promise<T>, budgetMs = maxWaitMs): Promise<T> {
      if (!admits(budgetMs)) return Promise.reject(new QueueFullError());
      return new Promise<T>((resolve, reject) => {
        const start = () => {
          running++;
          const startedAt = now();
          work()
            .then(resolve, reject)
            .finally(() => {
              averageJobMs = averageJobMs * 0.8 + (now() - startedAt) * 0.2;
              running--;
              next();
            });
        };
        if (running < concurrency) start();
        else queue.push({ start, fail: reject, deadline: now() + budgetMs - plannedJobMs() });
      });
    },
  };
}
