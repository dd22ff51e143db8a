import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { withTransaction, type Queryable } from '../../infra/transaction.js';
import type { Clock } from '../../lib/clock.js';
import { createPeriodic, type PeriodicLogger } from '../../lib/periodic.js';
import type { CommandChange, CommandRepository, CommandRow } from './command-repository.js';
import type { CommandJobRepository, CommandJobRow, TargetOutcome } from './command-job-repository.js';

/** A job's commands are made in batches of its rate × this (each batch one transaction), so its rate holds within a fraction of a second. */
const BATCH_SECONDS = 0.2;
const MAX_BATCH = 1000;
/** How soon a job waiting for its commands to finish (or for publishes in flight, once canceled) is looked at again. */
const RECHECK_S = 1;
/** Jobs (batches) one run takes at most, so that a run never starves the replica. */
const MAX_BATCHES_PER_RUN = 50;
const RETENTION_EVERY_MS = 60_000;

export interface CommandJobRunnerDeps {
  pool: Pool;
  jobs: CommandJobRepository;
  commands: Pick<CommandRepository, 'insertForJob' | 'cancelForJob'>;
  clock: Clock;
  maxPendingPerDevice: number;
  retentionDays: number;
  intervalMs: number;
  /** Told of committed command state changes (new commands included). */
  changed(rows: readonly CommandChange[]): void;
  log: PeriodicLogger;
}

export const batchSize = (maxPerSecond: number) => Math.max(1, Math.min(MAX_BATCH, Math.ceil(maxPerSecond * BATCH_SECONDS)));

/**
 * Works the jobs of every replica: each run takes the job whose next batch is
 * due, locked (SKIP LOCKED: replicas take different jobs, or different
 * batches of one job in turn), makes the batch's commands and moves the job's
 * next batch on by batch / max_per_second. The rate is the job's, shared by
 * every replica, on Postgres' clock. A device at its pending limit, disabled
 * or deleted since the job was created gets no command (`failed`, with why).
 */
export function createCommandJobRunner(deps: CommandJobRunnerDeps) {
  const { pool, jobs, commands } = deps;
  let lastRetention = 0;

  async function makeBatch(db: Queryable, job: CommandJobRow): Promise<CommandRow[]> {
    const size = batchSize(job.max_per_second);
    const targets = await jobs.pendingTargets(db, job.id, size);
    if (targets.length === 0) {
      if (await jobs.hasUnfinishedCommands(db, job.id)) await jobs.recheckIn(db, job.id, RECHECK_S);
      else await jobs.setState(db, job.id, 'completed', { finished: true });
      return [];
    }
    const devices = await jobs.lockDevices(db, job.tenant_id, targets);
    const outcomes: TargetOutcome[] = targets.map((deviceId) => {
      const device = devices.get(deviceId);
      const failure = !device ? 'device_deleted' : device.disabled ? 'device_disabled' : device.unfinished >= deps.maxPendingPerDevice ? 'pending_limit' : null;
      return failure
        ? { deviceId, state: 'failed', reason: failure, commandId: null }
        : { deviceId, state: 'created', reason: null, commandId: randomUUID() };
    });
    const made = await commands.insertForJob(
      db,
      {
        id: job.id,
        tenantId: job.tenant_id,
        name: job.name,
        params: job.params,
        requestDigest: `job:${job.id}`,
        ttlS: job.ttl_s,
        responseTimeoutS: job.response_timeout_s,
      },
      outcomes.flatMap((outcome) => (outcome.commandId ? [{ commandId: outcome.commandId, deviceId: outcome.deviceId }] : [])),
    );
    await jobs.settleTargets(db, job.id, outcomes);
    await jobs.delay(db, job.id, targets.length / job.max_per_second);
    return made;
  }

  /** Takes one due job and does its next step; false when none was due. */
  async function step(): Promise<boolean> {
    const result = await withTransaction(pool, async (db) => {
      const job = await jobs.lockDue(db);
      if (!job) return null;
      switch (job.state) {
        case 'preparing':
          // Its creation never finished (the replica listing its targets died): it never runs.
          await jobs.cancelPendingTargets(db, job.id);
          await jobs.setState(db, job.id, 'canceled', { reason: 'creation_interrupted', finished: true });
          return [];
        case 'canceled': {
          const rows = await commands.cancelForJob(db, job.id, new Date(deps.clock()));
          if (await jobs.hasUnfinishedCommands(db, job.id, true)) await jobs.recheckIn(db, job.id, RECHECK_S);
          else await jobs.setState(db, job.id, 'canceled', { finished: true });
          return rows;
        }
        case 'running':
          return makeBatch(db, job);
        default:
          await jobs.setState(db, job.id, job.state, { finished: true });
          return [];
      }
    });
    if (result === null) return false;
    if (result.length > 0) deps.changed(result);
    return true;
  }

  async function run() {
    if (await jobs.anyDue(pool)) {
      for (let batches = 0; batches < MAX_BATCHES_PER_RUN && (await step()); batches += 1);
    }
    if (Date.now() - lastRetention >= RETENTION_EVERY_MS) {
      lastRetention = Date.now();
      await jobs.deleteFinishedBefore(pool, deps.retentionDays, 1000);
    }
  }

  const periodic = createPeriodic('command job runner', run, deps.intervalMs, deps.log);
  return {
    start: () => periodic.start(),
    /** A job can make commands now (one was created). */
    nudge: () => void periodic.runNow().catch(() => undefined),
    /** Runs the due steps now (tests). */
    runNow: () => periodic.runNow(),
    stop: () => periodic.stop(),
  };
}

export type CommandJobRunner = ReturnType<typeof createCommandJobRunner>;
