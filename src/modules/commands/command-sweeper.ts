import type { Pool } from 'pg';
import type { Clock } from '../../lib/clock.js';
import { createPeriodic, type Periodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { CommandRepository, TransitionedRow } from './command-repository.js';

export interface CommandSweeperOptions {
  /** Time between the end of one sweep and the start of the next. */
  intervalMs: number;
  retentionDays: number;
  /** Commands moved (or deleted) per statement; small, so no statement holds many row locks for long. */
  batch: number;
  /** Statements per kind and sweep at most, so one sweep cannot run on without bound. */
  maxBatches: number;
  /** How often finished commands past retention are looked for. */
  retentionIntervalMs: number;
  /**
   * How much longer than its expiry a command EMQX may hold (sent,
   * delivered, or possibly sent) is waited for: EMQX may still take the
   * device's PUBACK for a message in flight after its expiry.
   */
  expiryGraceMs: number;
}

export const DEFAULT_SWEEPER_OPTIONS: Omit<CommandSweeperOptions, 'intervalMs' | 'retentionDays'> = {
  batch: 500,
  maxBatches: 20,
  retentionIntervalMs: 60_000,
  expiryGraceMs: 60_000,
};

export interface CommandSweeper extends Periodic {
  /** One sweep now: expiry, reply timeouts and (when due) retention. */
  sweep(): Promise<{ expired: number; timedOut: number; deleted: number }>;
}

/**
 * Runs on every replica. Each statement locks the rows it moves with
 * FOR UPDATE SKIP LOCKED, so replicas sweeping at the same moment take
 * different commands, and a command moves (and is reported) once.
 */
export function createCommandSweeper(deps: {
  pool: Pool;
  commands: Pick<CommandRepository, 'expireDue' | 'timeOutDue' | 'deleteFinishedBefore'>;
  clock: Clock;
  changed(rows: readonly TransitionedRow[]): void;
  log: PeriodicLogger;
  options: CommandSweeperOptions;
}): CommandSweeper {
  const { pool, commands, clock, log, options } = deps;
  let lastRetention = -Infinity;

  async function moveAll(move: (now: Date) => Promise<TransitionedRow[]>): Promise<number> {
    let moved = 0;
    for (let batch = 0; batch < options.maxBatches; batch++) {
      const rows = await move(new Date(clock()));
      if (rows.length > 0) deps.changed(rows);
      moved += rows.length;
      if (rows.length < options.batch) break;
    }
    return moved;
  }

  async function sweep() {
    const expired = await moveAll((now) => commands.expireDue(pool, now, options.batch, options.expiryGraceMs));
    const timedOut = await moveAll((now) => commands.timeOutDue(pool, now, options.batch));
    let deleted = 0;
    if (clock() - lastRetention >= options.retentionIntervalMs) {
      lastRetention = clock();
      const cutoff = new Date(lastRetention - options.retentionDays * 86_400_000);
      for (let batch = 0; batch < options.maxBatches; batch++) {
        const count = await commands.deleteFinishedBefore(pool, cutoff, options.batch);
        deleted += count;
        if (count < options.batch) break;
      }
    }
    return { expired, timedOut, deleted };
  }

  return { sweep, ...createPeriodic('command sweep', sweep, options.intervalMs, log) };
}
