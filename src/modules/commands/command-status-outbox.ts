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
  /** Records this replica has produced, counted for `drain()`'s answer. */
  let produced = 0;

  /** One batch; -1 when another replica is draining. */
  function drainBatch(): Promise<number> {
    return withTransaction(pool, async (db) => {
      const records = await commands.takeStatusRecords(db, options.batch);
      if (records === null) return -1;
      if (records.length === 0) return 0;
      const byTopic = new Map<string, TopicRecords>();
      for (const row of records) {
        const topic = deps.topics.commandStatus(row.tenant_id);
        let entry = byTopic.get(topic);
        if (!entry) byTopic.set(topic, (entry = { topic, messages: [] }));
        entry.messages.push({ key: row.device_id, value: JSON.stringify(toStatusRecord(row)) });
      }
      try {
        await Promise.all([...new Set(records.map((row) => row.tenant_id))].map((tenantId) => deps.ensureTenant(tenantId)));
        await deps.produce([...byTopic.values()], options.produceTimeoutMs);
      } catch (error) {
        deps.metrics.statusProduceFailed(records.length);
        throw error;
      }
      await commands.deleteStatusRecords(
        db,
        records.map((row) => row.id),
      );
      return records.length;
    });
  }

  async function drainAll() {
    for (;;) {
      const count = await drainBatch();
      if (count > 0) produced += count;
      if (count < options.batch) return;
    }
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
      if (active) void drain();
    },
    drain,
    /**
     * Stops the schedule after one last drain, so changes made while the
     * replica stopped are produced too — waiting at most a few seconds: what
     * is left is produced by another replica, or after the restart.
     */
    async stop() {
      active = false;
      const last = drain().then(() => draining.stop());
      await Promise.race([last, sleep(STOP_WAIT_MS)]);
    },
  };
}
