import type { Clock } from '../../lib/clock.js';
import { createPeriodic, type Periodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { LoggedChange } from './change-repository.js';

/** How often each replica reads the change log without being told to: the bound on a lost signal. */
export const CHANGE_FEED_INTERVAL_MS = 1000;
const READ_BATCH = 500;

export interface ChangeFeed extends Periodic {
  /**
   * Reads the log now and applies what is new. Resolves once every change
   * committed before the call is applied; rejects when the log cannot be read.
   */
  catchUp(): Promise<void>;
}

/**
 * One replica's reading of the change log: every change after the last one it
 * applied, in order, at least once a second and at once when a replica
 * announces a commit. A missed announcement costs at most one interval.
 *
 * At its first read the feed starts from the head and calls `reset`: what
 * the process holds in memory then predates the feed. It resets again when
 * it may have missed changes the log no longer holds (a gap in positions, or
 * no read for longer than the log keeps them).
 */
export function createChangeFeed(deps: {
  head(): Promise<string>;
  readAfter(position: string, limit: number): Promise<LoggedChange[]>;
  /** Drops what this replica holds in memory about the change's device. Must not throw. */
  apply(change: LoggedChange): void;
  /** Drops everything this replica holds in memory. Must not throw. */
  reset(): void;
  clock: Clock;
  /** The log keeps changes this long; a replica that read none for longer cannot tell what it missed. */
  retentionMs: number;
  log: PeriodicLogger;
  intervalMs?: number;
}): ChangeFeed {
  const { clock } = deps;
  let position: string | null = null;
  let lastReadAt = 0;

  async function read() {
    const startedAt = clock();
    if (position === null || startedAt - lastReadAt > deps.retentionMs / 2) {
      position = await deps.head();
      lastReadAt = startedAt;
      deps.reset();
      return;
    }
    for (;;) {
      const changes = await deps.readAfter(position, READ_BATCH);
      const first = changes[0];
      // Positions have no gaps: a jump means the changes between were pruned unread.
      if (first && BigInt(first.position) !== BigInt(position) + 1n) deps.reset();
      for (const change of changes) {
        deps.apply(change);
        position = change.position;
      }
      if (changes.length < READ_BATCH) break;
    }
    lastReadAt = startedAt;
  }

  // A read under way may have started before the caller's commit: runNow waits for one that starts after the call.
  const reading = createPeriodic('change log read', read, deps.intervalMs ?? CHANGE_FEED_INTERVAL_MS, deps.log);
  return { catchUp: () => reading.runNow(), ...reading };
}
