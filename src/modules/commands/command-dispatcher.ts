import type { Pool } from 'pg';
import { EmqxApiError, type EmqxApi } from '../../infra/emqx-api.js';
import type { Clock } from '../../lib/clock.js';
import { commandRepliesTopic, commandsTopic } from '../../lib/mqtt-topics.js';
import { createPeriodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { CommandRepository, CommandRow, TransitionedRow } from './command-repository.js';
import type { CommandMetrics } from './command-metrics.js';

export interface DispatcherOptions {
  /** How often this replica looks for commands due (retries, other replicas' commands) when nothing nudged it. */
  pollIntervalMs: number;
  /** Commands published at once by this replica (each a different device). */
  concurrency: number;
  /** How long a claimed command belongs to this replica; longer than a publish can take. */
  leaseMs: number;
  /** First retry after a failed publish; doubled per attempt up to maxRetryDelayMs. */
  retryDelayMs: number;
  maxRetryDelayMs: number;
  /**
   * After a 202 the command waits for the device's `session.subscribed`
   * event; should that event be lost, it is tried again after this long.
   */
  subscriberRecheckMs: number;
  /** Devices may reply (COMMAND_REPLIES=enabled): commands carry MQTT 5's Response Topic and Correlation Data (the command id). */
  replies: boolean;
}

export const DEFAULT_DISPATCHER_OPTIONS: Omit<DispatcherOptions, 'pollIntervalMs' | 'leaseMs' | 'replies'> = {
  concurrency: 32,
  retryDelayMs: 1000,
  maxRetryDelayMs: 60_000,
  subscriberRecheckMs: 5 * 60_000,
};

export interface CommandDispatcher {
  start(): void;
  /** Look for commands to send now (one was created, or a device subscribed). */
  nudge(): void;
  /** Stops claiming and waits for the publishes under way. */
  stop(): Promise<void>;
}

/** What the device receives on devices/{id}/commands. */
export function commandPayload(command: Pick<CommandRow, 'id' | 'name' | 'params' | 'expires_at'>): string {
  return JSON.stringify({ command_id: command.id, name: command.name, params: command.params, expires_at: command.expires_at.toISOString() });
}

/**
 * Hands queued commands to EMQX (`POST /api/v5/publish`, QoS 1). Every
 * replica runs one. A claim in Postgres leases the oldest queued command of a
 * device, and only while no older command of that device is queued, so a
 * device's commands go out one at a time in creation order, whichever replica
 * sends them; after a 200 the same replica goes on with the device's next
 * command. No transaction is open during the HTTP call: the lease is
 * committed before it and the outcome written after it.
 */
export function createCommandDispatcher(deps: {
  pool: Pool;
  commands: CommandRepository;
  emqx: Pick<EmqxApi, 'publish'>;
  clock: Clock;
  metrics: CommandMetrics;
  changed(rows: readonly TransitionedRow[]): void;
  log: PeriodicLogger;
  options: DispatcherOptions;
}): CommandDispatcher {
  const { pool, commands, emqx, clock, metrics, log, options } = deps;
  /** Started and not stopped: nothing is claimed or sent otherwise. */
  let active = false;
  const sending = new Set<Promise<void>>();

  const leaseUntil = (now: number) => new Date(now + options.leaseMs);

  function retryDelay(attempts: number): number {
    const delay = Math.min(options.retryDelayMs * 2 ** Math.max(0, attempts - 1), options.maxRetryDelayMs);
    // Spread out, so commands that failed together do not all come back together.
    return Math.round(delay * (0.8 + Math.random() * 0.4));
  }

  function changed(row: TransitionedRow | null) {
    if (row) deps.changed([row]);
  }

  /** Publishes one claimed command; returns the device's next command when this one was handed over and another is due. */
  async function send(command: CommandRow): Promise<CommandRow | null> {
    const now = clock();
    const remainingS = Math.ceil((command.expires_at.getTime() - now) / 1000);
    if (remainingS <= 0) {
      changed(await commands.transitionOne(pool, command.id, { event: 'expired_before_publish', reason: 'not_sent', at: new Date(now) }));
      return null;
    }
    let result;
    try {
      result = await emqx.publish({
        topic: commandsTopic(command.device_id),
        payload: commandPayload(command),
        qos: 1,
        retain: false,
        messageExpiryIntervalS: remainingS,
        userProperties: { command_id: command.id },
        ...(options.replies ? { responseTopic: commandRepliesTopic(command.device_id), correlationData: command.id } : {}),
      });
    } catch (error) {
      const ambiguous = !(error instanceof EmqxApiError) || error.ambiguous;
      const reason = error instanceof EmqxApiError && error.status !== null ? `status_${error.status}` : ambiguous ? 'no_answer' : 'unreachable';
      metrics.publishFailed(reason);
      const at = clock();
      await commands.retryLater(pool, command.id, {
        error: reason,
        possiblySent: ambiguous,
        now: new Date(at),
        sendAfter: new Date(at + retryDelay(command.attempts)),
      });
      return null;
    }

    const at = new Date(clock());
    switch (result.kind) {
      case 'handed': {
        const sent = await commands.transitionOne(pool, command.id, {
          event: 'published',
          reason: null,
          at,
          sets: { value: { sent_at: at, last_error: null }, first: { emqx_message_id: result.id } },
        });
        // Events may have moved it on already (delivered before this answer came).
        if (sent) changed(sent);
        else await commands.noteHanded(pool, command.id, result.id, at);
        const [next] = await commands.claim(pool, { now: at, leaseUntil: leaseUntil(at.getTime()), limit: 1, deviceId: command.device_id });
        return next ?? null;
      }
      case 'no_subscriber':
        metrics.noSubscriber();
        await commands.awaitSubscriber(pool, command.id, {
          attemptStartedAt: new Date(now),
          now: at,
          recheckAt: new Date(at.getTime() + options.subscriberRecheckMs),
        });
        return null;
      case 'refused':
        metrics.publishFailed('refused');
        changed(
          await commands.transitionOne(pool, command.id, {
            event: 'publish_refused',
            reason: 'refused_by_emqx',
            at,
            sets: { value: { last_error: `${result.status}: ${result.message}` } },
          }),
        );
        return null;
    }
  }

  /** A device's commands one after another, as long as each is handed over and the next is due. */
  async function sendInTurn(first: CommandRow): Promise<void> {
    let next: CommandRow | null = first;
    try {
      while (next && active) next = await send(next);
    } catch (error) {
      // The lease runs out and another pass tries again.
      log.warn({ command_id: next?.id, err: (error as Error).message }, 'command dispatch failed');
    }
  }

  /** Claims what is due, up to the free slots, and sends each claimed device's commands in turn. */
  async function claimDue() {
    const free = options.concurrency - sending.size;
    if (!active || free <= 0) return;
    const now = clock();
    const claimed = await commands.claim(pool, { now: new Date(now), leaseUntil: leaseUntil(now), limit: free });
    for (const command of claimed) {
      const work: Promise<void> = sendInTurn(command).finally(() => {
        sending.delete(work);
        // A slot is free: more may be due.
        nudge();
      });
      sending.add(work);
    }
  }

  // Also every interval: retries, and commands another replica created.
  const claiming = createPeriodic('claiming commands to send', claimDue, options.pollIntervalMs, log);

  function nudge() {
    // A failed claim is logged by the periodic runner and tried again every interval.
    if (active) claiming.runNow().catch(() => undefined);
  }

  return {
    start() {
      if (active) return;
      active = true;
      claiming.start();
      nudge();
    },
    nudge,
    async stop() {
      active = false;
      await claiming.stop();
      await Promise.all(sending);
    },
  };
}
