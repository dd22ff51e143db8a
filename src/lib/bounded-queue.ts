/** The work would have waited longer than allowed; the caller answers at once instead. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor() {
    super('work queue full');
  }
}

export interface BoundedQueue {
  /** Runs `work` when a slot frees up; rejects with QueueFullError when it would wait too long. */
  run<T>(work: () => Promise<T>): Promise<T>;
  /** Jobs waiting for a slot (not counting the running ones). */
  readonly waiting: number;
  readonly running: number;
}

export interface BoundedQueueOptions {
  concurrency: number;
  /** The longest a job may wait for a slot. */
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
 * refused up front when the jobs ahead of it would keep it waiting longer than
 * maxWaitMs (estimated from a moving average of job durations), and refused
 * when its turn comes after its deadline anyway: a caller with a 5 s budget is
 * better served by a fast refusal than by an answer that arrives too late.
 */
export function createBoundedQueue(options: BoundedQueueOptions): BoundedQueue {
  const { concurrency, maxWaitMs } = options;
  const now = options.now ?? (() => performance.now());
  let averageJobMs = options.initialJobMs ?? 50;
  let running = 0;
  const queue: Waiting[] = [];

  const expectedWaitMs = () => (Math.floor(queue.length / concurrency) + (running >= concurrency ? 1 : 0)) * averageJobMs;

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
    run<T>(work: () => Promise<T>): Promise<T> {
      if (running >= concurrency && expectedWaitMs() > maxWaitMs) return Promise.reject(new QueueFullError());
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
        else queue.push({ start, fail: reject, deadline: now() + maxWaitMs });
      });
    },
  };
}
