import type { Queryable } from '../infra/transaction.js';
import { createChangeSignal } from '../infra/credential-changes.js';
import type { CredentialChange } from '../lib/credential-change.js';
import { createPeriodic } from '../lib/periodic.js';
import { withTimeout } from '../lib/with-timeout.js';
import { createChangeEffects, type EffectHandler } from '../modules/changes/change-effects.js';
import { CHANGE_FEED_INTERVAL_MS, createChangeFeed } from '../modules/changes/change-feed.js';
import { createChangeMetrics } from '../modules/changes/change-metrics.js';
import { createChangeRecorder, type AfterCommit } from '../modules/changes/change-recorder.js';
import { createChangeRepository, type EffectName, type LoggedChange } from '../modules/changes/change-repository.js';
import type { WiringContext } from './context.js';

/** How long the log keeps a change: longer than any replica goes without reading it, short enough to stay small. */
const CHANGE_LOG_RETENTION_MS = 24 * 3600_000;
const PRUNE_INTERVAL_MS = 60_000;
/**
 * A session ends this long after the change that ends it: by then every
 * replica that can reach Postgres has read the change, so the kicked device
 * cannot reconnect through one that still holds the old verification.
 */
export const KICK_DELAY_MS = CHANGE_FEED_INTERVAL_MS + 500;
/** The admin request that made a change waits at most this long for this replica to apply it and do its clean-up. */
const AFTER_COMMIT_WAIT_MS = 2000;
/** Start-up waits at most this long for the change log's first read; Postgres or Redis being down must not keep the service down. */
const CHANGE_LOG_START_WAIT_MS = 2000;

/**
 * The change log and what follows it: the registry records each change in its
 * own transaction; every replica reads the log (at once when the Redis signal
 * says it moved, and every second in any case) and `apply`s each change to
 * what it holds in memory; the effects a change queues (`kick`, `clean_up`)
 * are done once, by whichever replica claims them, and retried until done.
 */
export function wireChanges(
  deps: WiringContext & {
    /** This replica drops what it holds in memory about the change's device. Must not throw. */
    apply(change: LoggedChange): void;
    /** This replica drops everything it holds in memory. Must not throw. */
    reset(): void;
    effects: Readonly<Record<EffectName, EffectHandler>>;
    /** Other features' part of a change's transaction. */
    inTransaction(db: Queryable, changes: readonly CredentialChange[]): Promise<AfterCommit>;
  },
) {
  const { infra, clock, log, lifecycle } = deps;
  const pool = infra.postgres.pool;
  const repository = createChangeRepository();
  const signal = createChangeSignal(infra.redis, log);
  const metrics = createChangeMetrics(deps.metrics, () => repository.pendingEffects(pool));

  const feed = createChangeFeed({
    head: () => repository.head(pool),
    readAfter: (position, limit) => repository.readAfter(pool, position, limit),
    apply(change) {
      deps.apply(change);
      metrics.applied.inc({ kind: change.kind });
    },
    reset: deps.reset,
    clock,
    retentionMs: CHANGE_LOG_RETENTION_MS,
    log,
  });
  const effects = createChangeEffects({
    claim: (limit, leaseMs, deviceIds) => repository.claimEffects(pool, limit, leaseMs, deviceIds),
    complete: (ids) => repository.completeEffects(pool, ids),
    retry: (id, delayMs, error) => repository.retryEffect(pool, id, delayMs, error),
    handlers: deps.effects,
    onAttempt: (effect, outcome) => metrics.attempts.inc({ effect: effect.effect, outcome }),
    log,
  });
  const pruning = createPeriodic('change log pruning', () => repository.prune(pool, new Date(clock() - CHANGE_LOG_RETENTION_MS), 10_000), PRUNE_INTERVAL_MS, log);

  const readNow = () => {
    feed.catchUp().catch(() => undefined);
    effects.runDue().catch(() => undefined);
  };
  const unsubscribe = signal.subscribe(readNow);

  const recorder = createChangeRecorder({
    repository,
    kickDelayMs: KICK_DELAY_MS,
    inTransaction: deps.inTransaction,
    // This replica applies the change before the admin request is answered
    // (a request that follows on it meets the new state) and does the
    // clean-up the change queued (its kick is not due yet); the other
    // replicas are told to read the log.
    async afterCommit(recorded) {
      signal.announce();
      const applied = async () => {
        await feed.catchUp();
        await effects.runFor([...new Set(recorded.map((change) => change.device_id))]);
      };
      await withTimeout(applied(), AFTER_COMMIT_WAIT_MS, 'applying a change').catch(() => undefined);
    },
  });

  // The app is ready once this replica has read the log and listens for the
  // signal, or once the wait is over: every change after that reaches it.
  lifecycle.onReady(async () => {
    await withTimeout(Promise.allSettled([signal.ready(), feed.catchUp()]), CHANGE_LOG_START_WAIT_MS, 'change log start').catch(() => undefined);
    feed.start();
    effects.start();
    pruning.start();
  });
  lifecycle.preClose(async () => {
    unsubscribe();
    await Promise.all([feed.stop(), effects.stop(), pruning.stop()]);
  });

  return {
    recorder,
    /** Runs what is due now (tests: an effect made due without waiting for the next look). */
    runDueEffects: () => effects.runDue(),
    /** Queued effects were added outside a recorded change (key expiry): run them now. */
    effectsQueued: () => void effects.runDue().catch(() => undefined),
  };
}
