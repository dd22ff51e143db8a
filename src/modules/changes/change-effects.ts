import { createPeriodic, type Periodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { ChangeEffect, EffectName } from './change-repository.js';

/** How often each replica looks for effects that are due. */
export const EFFECTS_INTERVAL_MS = 500;
const CLAIM_BATCH = 50;
/** An effect a replica took is not handed to another before this: longer than any one attempt (an EMQX call is bounded by its timeout). */
const LEASE_MS = 30_000;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 10_000;

/** Does the work of one effect; throws when it should be tried again. */
export type EffectHandler = (effect: ChangeEffect) => Promise<void>;

export interface ChangeEffects extends Periodic {
  /** Works through what is due now (after the run under way, if any: one run for every caller meanwhile); resolves when that run ends. */
  runDue(): Promise<void>;
  /**
   * Does what is due now for these devices only (a change just committed),
   * whatever else waits, and waits for this replica's worker's run under way, which may hold them.
   */
  runFor(deviceIds: readonly string[]): Promise<void>;
}

/** After the n-th failed attempt: 1 s, 2 s, 4 s … up to 10 s, so a session ends within 10 s of EMQX answering again. */
export function retryDelayMs(attempts: number): number {
  return Math.min(RETRY_BASE_MS * 2 ** Math.min(Math.max(attempts - 1, 0), 16), RETRY_MAX_MS);
}

/**
 * The effects queue's worker. Every replica runs one; Postgres hands each due
 * effect to one of them. An effect whose handler fails is due again after a
 * backoff, and one whose replica died is due again when its lease ends, so
 * nothing a change requires is dropped: not across restarts, not while EMQX
 * or Redis is unreachable.
 */
export function createChangeEffects(deps: {
  claim(limit: number, leaseMs: number, deviceIds?: readonly string[]): Promise<ChangeEffect[]>;
  complete(ids: readonly string[]): Promise<void>;
  retry(id: string, delayMs: number, error: string): Promise<void>;
  handlers: Readonly<Record<EffectName, EffectHandler>>;
  /** Told of every attempt's outcome. */
  onAttempt?: (effect: ChangeEffect, outcome: 'done' | 'failed') => void;
  log: PeriodicLogger;
  intervalMs?: number;
}): ChangeEffects {
  const { log } = deps;

  async function attempt(effect: ChangeEffect): Promise<boolean> {
    try {
      await deps.handlers[effect.effect](effect);
      deps.onAttempt?.(effect, 'done');
      return true;
    } catch (error) {
      deps.onAttempt?.(effect, 'failed');
      const message = error instanceof Error ? error.message : String(error);
      const delayMs = retryDelayMs(effect.attempts);
      // The first failure and then every fifth: a long outage does not flood the log.
      if (effect.attempts % 5 === 1) {
        log.warn({ effect: effect.effect, kind: effect.kind, device_id: effect.deviceId, attempts: effect.attempts, err: message }, 'change effect failed; it will be tried again');
      }
      await deps.retry(effect.id, delayMs, message);
      return false;
    }
  }

  async function runOnce(deviceIds?: readonly string[]) {
    for (;;) {
      const due = await deps.claim(CLAIM_BATCH, LEASE_MS, deviceIds);
      const done = await Promise.all(due.map(attempt));
      await deps.complete(due.filter((_, index) => done[index]).map((effect) => effect.id));
      if (due.length < CLAIM_BATCH) return;
    }
  }

  /** The worker's run under way, if any: its claim may have leased a device's effects just before runFor's own claim. */
  let workerRun: Promise<void> | undefined;
  const running = createPeriodic(
    'change effects',
    () => (workerRun = runOnce().finally(() => (workerRun = undefined))),
    deps.intervalMs ?? EFFECTS_INTERVAL_MS,
    log,
  );

  /**
   * Runs the devices' due effects, then waits for the worker's run under
   * way (a claim skips what is leased, and the change's own signal starts
   * one): either way their effects are done, or failed and due again, when
   * it resolves.
   */
  async function runFor(deviceIds: readonly string[]) {
    await runOnce(deviceIds);
    await workerRun?.catch(() => undefined);
  }

  return { runDue: () => running.runNow(), runFor, ...running };
}
