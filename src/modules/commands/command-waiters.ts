import { setTimeout as sleep } from 'node:timers/promises';
import type { Queryable } from '../../infra/transaction.js';
import type { CommandRepository, CommandRow } from './command-repository.js';

/**
 * Requests that wait for a command to finish (`POST …/commands?wait=N`). A
 * change committed on this replica wakes its waiters at once; a change made
 * on another replica (the delivery events and replies reach any of them) is
 * seen by reading the command every `pollMs`. Nothing is held meanwhile: no
 * transaction, no connection.
 */
export function createCommandWaiters(deps: { db: Queryable; commands: Pick<CommandRepository, 'findById'>; pollMs: number }) {
  const waiting = new Map<string, Set<() => void>>();
  let stopping = false;

  return {
    /** Told of every committed change on this replica. */
    changed(rows: readonly Pick<CommandRow, 'id' | 'finished_at'>[]) {
      for (const row of rows) {
        if (row.finished_at !== null) for (const wake of waiting.get(row.id) ?? []) wake();
      }
    },

    /** The replica stops: every wait answers now, with the command as it is. */
    stop() {
      stopping = true;
      for (const wakers of waiting.values()) for (const wake of wakers) wake();
    },

    /** The command once it has finished, or as it is after `ms` (or when the replica stops); null if it is gone. */
    async until(id: string, ms: number): Promise<CommandRow | null> {
      const deadline = Date.now() + ms;
      let wake = () => undefined as void;
      const woken = () => new Promise<void>((resolve) => (wake = resolve));
      const wakers = waiting.get(id) ?? new Set<() => void>();
      waiting.set(id, wakers);
      const waker = () => wake();
      wakers.add(waker);
      try {
        for (;;) {
          const signal = woken();
          const row = await deps.commands.findById(deps.db, id);
          const left = deadline - Date.now();
          if (!row || row.finished_at !== null || left <= 0 || stopping) return row;
          const timer = new AbortController();
          await Promise.race([signal, sleep(Math.min(deps.pollMs, left), undefined, { signal: timer.signal }).catch(() => undefined)]);
          timer.abort();
        }
      } finally {
        wakers.delete(waker);
        if (wakers.size === 0) waiting.delete(id);
      }
    },
  };
}

export type CommandWaiters = ReturnType<typeof createCommandWaiters>;
