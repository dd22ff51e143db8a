import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool } from 'pg';
import type { KafkaClient, TopicRecords } from '../../infra/kafka.js';
import { withTransaction } from '../../infra/transaction.js';
import { createPeriodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { TopicNames } from '../../lib/topics.js';
import type { CommandRepository, StatusRecordRow } from './command-repository.js';
import type { CommandMetrics } from './command-metrics.js';
import type { CommandState } from '../../lib/command-states.js';

/** One record of `commands.status.{tenant_id}` (key = device_id): a command entered `state`. */
export interface CommandStatusRecord {
  readonly command_id: string;
  readonly tenant_id: string;
  readonly device_id: string;
  readonly name: string;
  readonly state: CommandState;
  /** null for `queued`, the first state. */
  readonly previous_state: CommandState | null;
  readonly reason: string | null;
  /** The requester's Idempotency-Key or Kafka command_id, so it can find its command. */
  readonly idempotency_key: string | null;
  /** The command job that made the command, or null. */
  readonly job_id: string | null;
  /** ISO-8601 time of the change. */
  readonly at: string;
}

export function toStatusRecord(row: StatusRecordRow): CommandStatusRecord {
  return {
    command_id: row.command_id,
    tenant_id: row.tenant_id,
    device_id: row.device_id,
    name: row.name,
    state: row.state,
    previous_state: row.previous_state,
    reason: row.reason,
    idempotency_key: row.idempotency_key,
    job_id: row.job_id,
    at: row.at.toISOString(),
  };
}

/** How long a nudge waits, so that the changes made meanwhile are drained with it. */
const NUDGE_DELAY_MS = 20;

/** The longest a stopping replica waits for its last drain. */
const STOP_WAIT_MS = 3000;

export interface StatusOutboxOptions {
  /** How often the outbox is looked at when nothing nudged this replica (records of other replicas, failed produces). */
  intervalMs: number;
  /** Records per produce request. */
  batch: number;
  produceTimeoutMs: number;
}

export interface CommandStatusOutbox {
  start(): void;
  /** A change was committed here: produce it soon. */
  nudge(): void;
  /** Produces what the outbox holds now; resolves with the number of records produced. */
  drain(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Every state change is written to `command_status_outbox` in the statement
 * that makes it. This drains the outbox to Kafka: the records are produced
 * (acks=all) and deleted in one Postgres transaction, so a record is deleted
 * only once Kafka has it, and a failed produce leaves it for the next try. One
 * replica drains at a time (an advisory lock), which keeps a device's records
 * in the order their changes were committed. A record is produced twice only
 * if Kafka acknowledged it and the replica then died before its delete committed.
 */
export function createCommandStatusOutbox(deps: {
  pool: Pool;
  commands: Pick<CommandRepository, 'takeStatusRecords' | 'deleteStatusRecords'>;
  produce: KafkaClient['produce'];
  topics: Pick<TopicNames, 'commandStatus'>;
  /** Creates the tenant's topics if this process has not yet made sure of them. */
  ensureTenant(tenantId: string): Promise<void>;
  metrics: Pick<CommandMetrics, 'statusProduceFailed'>;
  log: PeriodicLogger;
  options: StatusOutboxOptions;
}): CommandStatusOutbox {
  const { pool, commands, options, log } = deps;
  /** Started and not stopped: only then does a change committed here start a drain. */
  let active = false;
  /** A drain asked for by nudge() and not yet started. */
  let nudged: NodeJS.Timeout | undefined;
  /** Records this replica has produced, counted for `drain()`'s answer. */
  let produced = 0;

  /**
   * One batch, without the records of `failing` tenants; null when another
   * replica is draining. Each tenant's topic is produced on its own: a topic
   * that fails keeps its records for the next try (and its tenant is added to
   * `failing`), the others' are produced and deleted all the same.
   */
  function drainBatch(failing: Set<string>): Promise<{ taken: number; produced: number } | null> {
    return withTransaction(pool, async (db) => {
      const records = await commands.takeStatusRecords(db, options.batch, [...failing]);
      if (records === null) return null;
      const byTenant = Map.groupBy(records, (row) => row.tenant_id);
      const outcomes = await Promise.all(
        [...byTenant].map(async ([tenantId, rows]) => {
          try {
            await deps.ensureTenant(tenantId);
            const topic: TopicRecords = {
              topic: deps.topics.commandStatus(tenantId),
              messages: rows.map((row) => ({ key: row.device_id, value: JSON.stringify(toStatusRecord(row)) })),
            };
            await deps.produce([topic], options.produceTimeoutMs);
            return rows;
          } catch (error) {
            deps.metrics.statusProduceFailed(rows.length);
            failing.add(tenantId);
            log.warn({ tenant_id: tenantId, err: (error as Error).message }, 'command status records not produced; kept for the next try');
            return [];
          }
        }),
      );
      const produced = outcomes.flat();
      if (produced.length > 0) {
        await commands.deleteStatusRecords(
          db,
          produced.map((row) => row.id),
        );
      }
      return { taken: records.length, produced: produced.length };
    });
  }

  async function drainAll() {
    const failing = new Set<string>();
    for (;;) {
      const batch = await drainBatch(failing);
      if (batch === null) return;
      produced += batch.produced;
      if (batch.taken < options.batch) break;
    }
    if (failing.size > 0) throw new Error(`status records of ${failing.size} tenant(s) not produced`);
  }

  // Also every interval: records of other replicas, and those a failed produce left.
  const draining = createPeriodic('producing command status records', drainAll, options.intervalMs, log);

  async function drain(): Promise<number> {
    const before = produced;
    // A failure is logged by the periodic runner; the records wait for the next try.
    await draining.runNow().catch(() => undefined);
    return produced - before;
  }

  return {
    start() {
      if (active) return;
      active = true;
      draining.start();
      void drain();
    },
    nudge() {
      // The changes of the next few milliseconds go with it: one produce and one delete for many.
      if (!active || nudged) return;
      nudged = setTimeout(() => {
        nudged = undefined;
        if (active) void drain();
      }, NUDGE_DELAY_MS);
    },
    drain,
    /**
     * Stops the schedule after one last drain, so changes made while the
     * replica stopped are produced too — waiting at most a few seconds: what
     * is left is produced by another replica, or after the restart.
     */
    async stop() {
      active = false;
      clearTimeout(nudged);
      const last = drain().then(() => draining.stop());
      await Promise.race([last, sleep(STOP_WAIT_MS)]);
    },
  };
}
