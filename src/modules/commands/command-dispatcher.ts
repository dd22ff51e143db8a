import type { Pool } from 'pg';
import { EmqxApiError, type EmqxApi, type EmqxBulkItemResult, type EmqxPublishRequest } from '../../infra/emqx-api.js';
import type { Clock } from '../../lib/clock.js';
import { commandRepliesTopic, commandsTopic } from '../../lib/mqtt-topics.js';
import { createPeriodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { ClaimedRow, CommandChange, CommandRepository, CommandRow } from './command-repository.js';
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
  // Two bulk calls' worth: a job to 10,000 subscribed devices was all acked
  // in 13-14 s with 32, and in 10.0-10.4 s with 128 (npm run bench -- 'command job').
  concurrency: 128,
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
 * How long a nudge waits before it claims, so that the commands created
 * meanwhile are claimed, published and marked `sent` together: fewer,
 * larger statements and bulk calls. Against claiming at once: 13 % more
 * commands a second created → acked, 11 % less service CPU per command
 * (npm run bench -- commands, paired).
 */
const NUDGE_DELAY_MS = 10;

/** Messages in one `POST /api/v5/publish/bulk` at most. */
const MAX_BULK = 64;

/**
 * Hands queued commands to EMQX at QoS 1. Every replica runs one. A claim in
 * Postgres leases the heads of devices' queues (the oldest queued command of
 * each, and only while no older one is queued), so a device's commands go
 * out one at a time in creation order, whichever replica sends them. What one
 * claim took goes out in `POST /api/v5/publish/bulk` calls of up to 64 (one
 * message per device), side by side, each message's answer handled on its
 * own; a single command in one `POST /api/v5/publish`. After a 200 the
 * device's next command is its head, due at once, and the next claim takes it. No transaction is open during
 * the HTTP call: the lease is committed before it and the outcome written
 * after it, for all the handed-over commands in one statement.
 */
export function createCommandDispatcher(deps: {
  pool: Pool;
  commands: CommandRepository;
  emqx: Pick<EmqxApi, 'publish' | 'publishBulk'>;
  clock: Clock;
  metrics: CommandMetrics;
  changed(rows: readonly CommandChange[]): void;
  log: PeriodicLogger;
  options: DispatcherOptions;
}): CommandDispatcher {
  const { pool, commands, emqx, clock, metrics, log, options } = deps;
  /** Started and not stopped: nothing is claimed or sent otherwise. */
  let active = false;
  const sending = new Set<Promise<void>>();
  /** Commands leased by this replica and not yet answered. */
  let inFlight = 0;

  function retryDelay(attempts: number): number {
    const delay = Math.min(options.retryDelayMs * 2 ** Math.max(0, attempts - 1), options.maxRetryDelayMs);
    // Spread out, so commands that failed together do not all come back together.
    return Math.round(delay * (0.8 + Math.random() * 0.4));
  }

  function changed(rows: readonly CommandChange[] | CommandChange | null) {
    const list = rows === null ? [] : Array.isArray(rows) ? rows : [rows as CommandChange];
    if (list.length > 0) deps.changed(list);
  }

  const messageOf = (command: ClaimedRow, remainingS: number): EmqxPublishRequest => ({
    topic: commandsTopic(command.device_id),
    payload: commandPayload(command),
    qos: 1,
    retain: false,
    messageExpiryIntervalS: remainingS,
    userProperties: { command_id: command.id },
    ...(options.replies ? { responseTopic: commandRepliesTopic(command.device_id), correlationData: command.id } : {}),
  });

  /** The publish got no usable answer: tried again later, possibly sent unless EMQX surely did not take it. */
  async function failed(command: ClaimedRow, error: unknown) {
    const ambiguous = !(error instanceof EmqxApiError) || error.ambiguous;
    const reason = error instanceof EmqxApiError && error.status !== null ? `status_${error.status}` : ambiguous ? 'no_answer' : 'unreachable';
    metrics.publishFailed(reason);
    await commands.retryLater(pool, command.id, {
      error: reason,
      possiblySent: ambiguous || command.was_possibly_sent,
      now: new Date(clock()),
      delayMs: retryDelay(command.attempts),
    });
  }

  /** EMQX's answer for one command (`attemptStartedAt`: before its publish), except 200s, which `handed` takes together. */
  async function answered(command: ClaimedRow, result: EmqxBulkItemResult, attemptStartedAt: number) {
    const at = new Date(clock());
    switch (result.kind) {
      case 'handed':
        return;
      case 'no_subscriber':
        metrics.noSubscriber();
        await commands.awaitSubscriber(pool, command.id, {
          attemptStartedAt: new Date(attemptStartedAt),
          now: at,
          recheckMs: options.subscriberRecheckMs,
          wasPossiblySent: command.was_possibly_sent,
        });
        return;
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
        return;
      case 'failed':
        await failed(command, new EmqxApiError('publish', result.status));
        return;
    }
  }

  /** Commands EMQX answered 200 for: `sent` together (events may have moved some on already). */
  async function handed(items: readonly { command: ClaimedRow; id: string | null }[]) {
    if (items.length === 0) return;
    changed(await commands.markPublished(pool, items.map(({ command, id }) => ({ id: command.id, emqxMessageId: id })), new Date(clock())));
  }

  /** Publishes one call's worth: one command alone by `/publish`, more by `/publish/bulk`, each answer handled on its own. */
  async function publish(batch: readonly { command: ClaimedRow; message: EmqxPublishRequest }[], startedAt: number) {
    let results: readonly (EmqxBulkItemResult | Error)[];
    try {
      if (batch.length === 1) results = [await emqx.publish(batch[0]!.message)];
      else {
        const bulk = await emqx.publishBulk(batch.map((item) => item.message));
        // One message EMQX refuses refuses the call: each then goes alone, to find which.
        results = bulk.kind === 'items' ? bulk.items : await Promise.all(batch.map((item) => emqx.publish(item.message).catch((error: unknown) => error as Error)));
      }
    } catch (error) {
      await Promise.all(batch.map(({ command }) => failed(command, error)));
      return;
    }
    const toHand: { command: ClaimedRow; id: string | null }[] = [];
    await Promise.all(
      batch.map(({ command }, index) => {
        const result = results[index] as EmqxBulkItemResult | Error;
        if (result instanceof Error) return failed(command, result);
        if (result.kind === 'handed') toHand.push({ command, id: result.id });
        return answered(command, result, startedAt);
      }),
    );
    await handed(toHand);
  }

  /**
   * Publishes what one claim took, past their expiry expired. The calls of
   * one claim go side by side, so a claim takes no longer than one call to
   * answer, within the lease whatever its size.
   */
  async function send(claimed: readonly ClaimedRow[]) {
    const startedAt = clock();
    const live: { command: ClaimedRow; message: EmqxPublishRequest }[] = [];
    for (const command of claimed) {
      const remainingS = Math.ceil((command.expires_at.getTime() - startedAt) / 1000);
      if (remainingS > 0) live.push({ command, message: messageOf(command, remainingS) });
      else changed(await commands.transitionOne(pool, command.id, { event: 'expired_before_publish', reason: 'not_sent', at: new Date(startedAt) }));
    }
    const calls: Promise<void>[] = [];
    for (let from = 0; from < live.length; from += MAX_BULK) calls.push(publish(live.slice(from, from + MAX_BULK), startedAt));
    await Promise.all(calls);
  }

  /** Claims what is due, up to the free slots, and sends it. */
  async function claimDue() {
    const free = options.concurrency - inFlight;
    if (!active || free <= 0) return;
    const claimed = await commands.claim(pool, { leaseMs: options.leaseMs, limit: free });
    if (claimed.length === 0) return;
    inFlight += claimed.length;
    const work: Promise<void> = send(claimed)
      .catch((error: unknown) => {
        // The leases run out and another pass tries again.
        log.warn({ commands: claimed.length, err: (error as Error).message }, 'command dispatch failed');
      })
      .finally(() => {
        inFlight -= claimed.length;
        sending.delete(work);
        // Slots are free, and the devices' next commands are due.
        nudge();
      });
    sending.add(work);
  }

  // Also every interval: retries, and commands another replica created.
  const claiming = createPeriodic('claiming commands to send', claimDue, options.pollIntervalMs, log);

  let nudged: NodeJS.Timeout | undefined;
  function nudge() {
    if (!active || nudged) return;
    nudged = setTimeout(() => {
      nudged = undefined;
      // A failed claim is logged by the periodic runner and tried again every interval.
      if (active) claiming.runNow().catch(() => undefined);
    }, NUDGE_DELAY_MS);
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
      clearTimeout(nudged);
      nudged = undefined;
      await claiming.stop();
      await Promise.all(sending);
    },
  };
}
