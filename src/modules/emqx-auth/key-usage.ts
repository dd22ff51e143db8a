import type { Clock } from '../../lib/clock.js';
import type { VerificationRepository } from './verification-repository.js';

export interface KeyUsageRecorder {
  /** Notes that a key was just used; written later, together with others. */
  record(keyId: string): void;
  flush(): Promise<void>;
  /** Stops the timer and writes what is pending. */
  close(): Promise<void>;
}

export interface KeyUsageLogger {
  warn(object: object, message: string): void;
}

/**
 * last_used_at without a database write per connect: key ids collect in memory
 * and one UPDATE per interval writes them all. A lost flush (crash, database
 * down) loses at most one interval of "last used" precision, nothing else.
 */
export function createKeyUsageRecorder(deps: {
  repository: Pick<VerificationRepository, 'markKeysUsed'>;
  clock: Clock;
  log: KeyUsageLogger;
  intervalMs?: number;
  /** A reconnect storm must not grow the pending set without bound while the database is away. */
  maxPending?: number;
}): KeyUsageRecorder {
  const { repository, clock, log } = deps;
  const maxPending = deps.maxPending ?? 100_000;
  let pending = new Set<string>();
  let flushing: Promise<void> = Promise.resolve();

  const flush = (): Promise<void> => {
    if (pending.size === 0) return flushing;
    const batch = [...pending];
    pending = new Set();
    flushing = flushing
      .then(() => repository.markKeysUsed(batch, new Date(clock())))
      .catch((error: unknown) => {
        log.warn({ err: error instanceof Error ? error.message : String(error), keys: batch.length }, 'could not record key usage');
      });
    return flushing;
  };

  const timer = setInterval(() => void flush(), deps.intervalMs ?? 5000);
  timer.unref();

  return {
    record(keyId) {
      if (pending.size < maxPending) pending.add(keyId);
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}
