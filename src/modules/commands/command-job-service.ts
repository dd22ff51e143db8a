import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { withTransaction, type Queryable } from '../../infra/transaction.js';
import type { Actor } from '../../lib/actor.js';
import type { Clock } from '../../lib/clock.js';
import { COMMAND_STATES, type CommandState } from '../../lib/command-states.js';
import type { DeviceLabels } from '../../lib/device-labels.js';
import { BadRequestError, ConflictError, NotFoundError } from '../../lib/errors.js';
import { isCommandId, nameIds, repeatedIds } from '../../lib/identifiers.js';
import { parseCursor, toPage, type Page, type PageKey } from '../../lib/pagination.js';
import type { AuditRepository } from '../audit/audit-repository.js';
import type { CommandChange, CommandRepository, TransitionedRow } from './command-repository.js';
import { DEFAULT_RESPONSE_TIMEOUT_S, DEFAULT_TTL_S } from './command-schemas.js';
import { assertTenantVisible } from '../tenants/tenant-service.js';
import type { TenantRepository } from '../tenants/tenant-repository.js';
import type { CommandJobRepository, CommandJobRow, CommandJobState, TargetFailure } from './command-job-repository.js';

export const MAX_JOB_DEVICE_IDS = 100_000;
export const DEFAULT_MAX_PER_SECOND = 1000;
/** Targets listed per statement (each its own short transaction) while a job is created. */
const TARGET_CHUNK = 5000;
/** A job still preparing this long after its creation was interrupted (its replica died): the runner cancels it. */
const PREPARATION_TIMEOUT_S = 600;
/** How long a cancel waits for publishes that were in flight, before leaving them to the runner. */
const CANCEL_WAIT_MS = 3000;

export interface CommandJobInput {
  name: string;
  params?: Record<string, unknown>;
  ttl_s?: number;
  response_timeout_s?: number;
  target: { device_ids: string[] } | { labels: DeviceLabels };
  max_per_second?: number;
}

/** Every target counted once: by its command's state, or `scheduled` (no command yet) or `deleted` (its command went with its device). */
export type JobCounts = Record<CommandState | 'scheduled' | 'deleted', number>;

export interface CommandJobView {
  id: string;
  tenant_id: string;
  name: string;
  params: Record<string, unknown>;
  ttl_s: number;
  response_timeout_s: number | null;
  target: CommandJobRow['target'];
  max_per_second: number;
  state: CommandJobState;
  reason: string | null;
  total: number;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

export interface CommandJobDetail extends CommandJobView {
  counts: JobCounts;
  /** The targets counted as `failed` that never got a command, by why. */
  failures: Partial<Record<TargetFailure, number>>;
}

export function toJobView(row: CommandJobRow): CommandJobView {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    name: row.name,
    params: row.params,
    ttl_s: row.ttl_s,
    response_timeout_s: row.response_timeout_s,
    target: row.target,
    max_per_second: row.max_per_second,
    state: row.state,
    reason: row.reason,
    total: row.total,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    finished_at: row.finished_at?.toISOString() ?? null,
  };
}

export interface CommandJobServiceDeps {
  pool: Pool;
  jobs: CommandJobRepository;
  commands: Pick<CommandRepository, 'cancelForJob'>;
  tenants: Pick<TenantRepository, 'findById'>;
  audit: AuditRepository;
  clock: Clock;
  repliesEnabled: boolean;
  /** Told of committed command state changes. */
  changed(rows: readonly CommandChange[]): void;
  /** A job can make commands now. */
  nudge(): void;
}

/**
 * Command jobs: one command per targeted device of a tenant. Creating one
 * lists its targets in chunks, each chunk its own short transaction, so a job
 * to 100,000 devices holds no transaction over all of them; the runner
 * (command-job-runner.ts) then makes the commands at the job's rate.
 */
export function createCommandJobService(deps: CommandJobServiceDeps) {
  const { pool, jobs, audit, clock } = deps;

  async function findVisible(db: Queryable, actor: Actor, tenantId: string, jobId: string, lock = false): Promise<CommandJobRow> {
    assertTenantVisible(actor, tenantId, `command job ${jobId}`);
    const job = isCommandId(jobId) ? await jobs.find(db, tenantId, jobId, lock) : null;
    if (!job) throw new NotFoundError(`command job ${jobId}`);
    return job;
  }

  async function detail(db: Queryable, job: CommandJobRow): Promise<CommandJobDetail> {
    const counts = Object.fromEntries([...COMMAND_STATES, 'scheduled', 'deleted'].map((state) => [state, 0])) as JobCounts;
    const failures: Partial<Record<TargetFailure, number>> = {};
    for (const bucket of await jobs.counts(db, job.id)) {
      const state = bucket.state as keyof JobCounts;
      counts[state] = (counts[state] ?? 0) + bucket.count;
      if (bucket.state === 'failed' && bucket.reason !== null) {
        const reason = bucket.reason as TargetFailure;
        failures[reason] = (failures[reason] ?? 0) + bucket.count;
      }
    }
    return { ...toJobView(job), counts, failures };
  }

  /** Lists the targets of a job being created, a chunk per statement. */
  async function listTargets(job: CommandJobRow, target: CommandJobInput['target']): Promise<void> {
    if ('device_ids' in target) {
      for (let start = 0; start < target.device_ids.length; start += TARGET_CHUNK) {
        await jobs.addTargets(pool, job.id, target.device_ids.slice(start, start + TARGET_CHUNK));
      }
      return;
    }
    let after: PageKey | undefined;
    do {
      after = (await jobs.addLabelTargets(pool, { id: job.id, tenantId: job.tenant_id }, target.labels, after, TARGET_CHUNK)) ?? undefined;
    } while (after);
  }

  /** Cancels what EMQX has not taken of a canceled job's commands; whether some are still being published. */
  async function cancelCommands(db: Queryable, jobId: string): Promise<{ rows: TransitionedRow[]; inFlight: boolean }> {
    const rows = await deps.commands.cancelForJob(db, jobId, new Date(clock()));
    return { rows, inFlight: await jobs.hasUnfinishedCommands(db, jobId, true) };
  }

  return {
    async create(actor: Actor, tenantId: string, input: CommandJobInput): Promise<CommandJobDetail> {
      assertTenantVisible(actor, tenantId);
      if (input.response_timeout_s !== undefined && !deps.repliesEnabled) {
        throw new BadRequestError('body.response_timeout_s: command replies are not enabled (COMMAND_REPLIES)', 'validation_failed');
      }
      if (!(await deps.tenants.findById(pool, tenantId))) throw new NotFoundError(`tenant ${tenantId}`);
      const { target } = input;
      if ('device_ids' in target) {
        const ids = target.device_ids;
        const repeated = repeatedIds(ids);
        if (repeated.length > 0) throw new BadRequestError(`body.target.device_ids: given more than once: ${nameIds(repeated)}`, 'validation_failed');
        const known = new Set<string>();
        for (let start = 0; start < ids.length; start += TARGET_CHUNK) {
          for (const id of await jobs.devicesOfTenant(pool, tenantId, ids.slice(start, start + TARGET_CHUNK))) known.add(id);
        }
        const unknown = ids.filter((id) => !known.has(id));
        if (unknown.length > 0) {
          throw new BadRequestError(`body.target.device_ids: not devices of tenant ${tenantId}: ${nameIds(unknown)}`, 'unknown_devices');
        }
      }

      const created = await withTransaction(pool, async (db) => {
        const job = await jobs.insert(db, {
          id: randomUUID(),
          tenantId,
          name: input.name,
          params: input.params ?? {},
          ttlS: input.ttl_s ?? DEFAULT_TTL_S,
          responseTimeoutS: deps.repliesEnabled ? (input.response_timeout_s ?? DEFAULT_RESPONSE_TIMEOUT_S) : null,
          target: 'device_ids' in target ? { device_ids: target.device_ids.length } : { labels: target.labels },
          maxPerSecond: input.max_per_second ?? DEFAULT_MAX_PER_SECOND,
          preparationTimeoutS: PREPARATION_TIMEOUT_S,
        });
        await audit.record(
          db,
          actor,
          { action: 'command_job.create', objectType: 'command_job', objectId: job.id, tenantId, details: { name: job.name, target: job.target } },
          new Date(clock()),
        );
        return job;
      });
      try {
        await listTargets(created, target);
      } catch (error) {
        // Best effort: a job whose listing failed never runs (the runner cancels it later if this fails too).
        await jobs.setState(pool, created.id, 'canceled', { reason: 'creation_failed', finished: true }).catch(() => undefined);
        throw error;
      }
      const started = await jobs.start(pool, created.id);
      if (!started) throw new ConflictError(`command job ${created.id} was canceled while it was created`, 'command_job_canceled');
      deps.nudge();
      return detail(pool, started);
    },

    async get(actor: Actor, tenantId: string, jobId: string): Promise<CommandJobDetail> {
      return detail(pool, await findVisible(pool, actor, tenantId, jobId));
    },

    async list(actor: Actor, tenantId: string, query: { limit: number; cursor?: string }): Promise<Page<CommandJobView>> {
      assertTenantVisible(actor, tenantId);
      const after = parseCursor(query.cursor, isCommandId);
      if (!(await deps.tenants.findById(pool, tenantId))) throw new NotFoundError(`tenant ${tenantId}`);
      const rows = await jobs.list(pool, { tenantId, limit: query.limit, after });
      return toPage(rows, query.limit, (row) => row.id, toJobView);
    },

    /**
     * Cancels every command of the job that EMQX has not taken, and the
     * targets that have none yet. A publish in flight is waited for (up to
     * CANCEL_WAIT_MS); one that EMQX does not take is canceled after it, by
     * this request or the runner.
     */
    async cancel(actor: Actor, tenantId: string, jobId: string): Promise<CommandJobDetail> {
      const { job, inFlight, rows } = await withTransaction(pool, async (db) => {
        const current = await findVisible(db, actor, tenantId, jobId, true);
        if (current.state === 'preparing') throw new ConflictError(`command job ${jobId} is still being created`, 'command_job_preparing');
        if (current.state !== 'running') return { job: current, inFlight: false, rows: [] as TransitionedRow[] };
        await jobs.cancelPendingTargets(db, current.id);
        const canceledCommands = await cancelCommands(db, current.id);
        const canceled = await jobs.setState(db, current.id, 'canceled', { reason: 'canceled', finished: !canceledCommands.inFlight });
        await audit.record(
          db,
          actor,
          { action: 'command_job.cancel', objectType: 'command_job', objectId: current.id, tenantId, details: { name: current.name } },
          new Date(clock()),
        );
        return { job: canceled, ...canceledCommands };
      });
      if (rows.length > 0) deps.changed(rows);
      if (inFlight) {
        const deadline = clock() + CANCEL_WAIT_MS;
        while (clock() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          const settled = await withTransaction(pool, async (db) => {
            const locked = await jobs.find(db, tenantId, job.id, true);
            if (!locked || locked.finished_at !== null) return { done: true, rows: [] as TransitionedRow[] };
            const { rows, inFlight: still } = await cancelCommands(db, job.id);
            if (!still) await jobs.setState(db, job.id, 'canceled', { finished: true });
            return { done: !still, rows };
          });
          if (settled.rows.length > 0) deps.changed(settled.rows);
          if (settled.done) break;
        }
      }
      return detail(pool, (await jobs.find(pool, tenantId, job.id)) ?? job);
    },
  };
}

export type CommandJobService = ReturnType<typeof createCommandJobService>;
