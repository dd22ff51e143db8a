import { afterKey, CREATED_US } from '../../infra/sql.js';
import type { Queryable } from '../../infra/transaction.js';
import type { DeviceLabels } from '../../lib/device-labels.js';
import type { PageKey } from '../../lib/pagination.js';

export type CommandJobState = 'preparing' | 'running' | 'completed' | 'canceled';
/** Why a target got no command. */
export type TargetFailure = 'pending_limit' | 'device_disabled' | 'device_deleted';

export interface CommandJobRow {
  id: string;
  tenant_id: string;
  name: string;
  params: Record<string, unknown>;
  ttl_s: number;
  response_timeout_s: number | null;
  target: { labels: DeviceLabels } | { device_ids: number };
  max_per_second: number;
  state: CommandJobState;
  reason: string | null;
  total: number;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  created_us: string;
}

export interface NewCommandJob {
  id: string;
  tenantId: string;
  name: string;
  params: Record<string, unknown>;
  ttlS: number;
  responseTimeoutS: number | null;
  target: CommandJobRow['target'];
  maxPerSecond: number;
  /** A job still preparing this long after its creation was interrupted: the runner cancels it. */
  preparationTimeoutS: number;
}

/** One bucket of a job's targets: the state of its command, or what stands in for one. */
export interface TargetCount {
  /** A command state; `scheduled` (no command yet), `deleted` (its command went with its device), or `failed`/`canceled` for targets that never got one. */
  state: string;
  /** For targets that never got a command: why. */
  reason: string | null;
  count: number;
}

/** What a target of a batch became. */
export interface TargetOutcome {
  deviceId: string;
  state: 'created' | 'failed';
  reason: TargetFailure | null;
  commandId: string | null;
}

const COLUMNS = `id, tenant_id, name, params, ttl_s, response_timeout_s, target, max_per_second, state, reason, total, created_at, updated_at, finished_at, ${CREATED_US}`;

/** A job with a batch to make now: what `anyDue` asks about and `lockDue` takes. */
const DUE = 'finished_at IS NULL AND next_batch_at <= now()';

/** Command jobs and their targets, in Postgres. Every time here is Postgres' own, so replicas agree on the rate and the deadlines. */
export function createCommandJobRepository() {
  return {
    async insert(db: Queryable, job: NewCommandJob): Promise<CommandJobRow> {
      const { rows } = await db.query<CommandJobRow>(
        `INSERT INTO command_jobs (id, tenant_id, name, params, ttl_s, response_timeout_s, target, max_per_second, state, next_batch_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'preparing', now() + $9::int * interval '1 second', now(), now())
         RETURNING ${COLUMNS}`,
        [job.id, job.tenantId, job.name, JSON.stringify(job.params), job.ttlS, job.responseTimeoutS, JSON.stringify(job.target), job.maxPerSecond, job.preparationTimeoutS],
      );
      return rows[0] as CommandJobRow;
    },

    /** The ids among `ids` that are devices of the tenant. */
    async devicesOfTenant(db: Queryable, tenantId: string, ids: readonly string[]): Promise<Set<string>> {
      const { rows } = await db.query<{ id: string }>(`SELECT id FROM devices WHERE tenant_id = $1 AND id = ANY($2::uuid[])`, [tenantId, ids]);
      return new Set(rows.map((row) => row.id));
    },

    async addTargets(db: Queryable, jobId: string, deviceIds: readonly string[]): Promise<void> {
      await db.query(
        `INSERT INTO command_job_targets (job_id, device_id, state)
         SELECT $1, device_id, 'pending' FROM unnest($2::uuid[]) AS t(device_id)
         ON CONFLICT DO NOTHING`,
        [jobId, deviceIds],
      );
    },

    /**
     * Adds the devices carrying `labels` among one page of the tenant's
     * devices (in creation order, after `after`) as targets. Returns the last
     * device of the page, or null when the page was the last.
     */
    async addLabelTargets(db: Queryable, job: { id: string; tenantId: string }, labels: DeviceLabels, after: PageKey | undefined, pageSize: number): Promise<PageKey | null> {
      const values: unknown[] = [job.id, job.tenantId, JSON.stringify(labels), pageSize];
      const { rows } = await db.query<{ id: string; created_us: string; scanned: string }>(
        `WITH page AS (
           SELECT id, labels, ${CREATED_US} FROM devices
            WHERE tenant_id = $2 AND ${afterKey(values, after, '::uuid')}
            ORDER BY created_at, id LIMIT $4
         ),
         added AS (
           INSERT INTO command_job_targets (job_id, device_id, state)
           SELECT $1, id, 'pending' FROM page WHERE labels @> $3::jsonb
           ON CONFLICT DO NOTHING
         )
         SELECT id, created_us, count(*) OVER () AS scanned FROM page ORDER BY created_us::bigint DESC, id DESC LIMIT 1`,
        values,
      );
      const last = rows[0];
      if (!last || Number(last.scanned) < pageSize) return null;
      return { createdUs: last.created_us, id: last.id };
    },

    /** The job's targets are listed: it runs from now on (or is completed at once, with none). */
    async start(db: Queryable, id: string): Promise<CommandJobRow | null> {
      const { rows } = await db.query<CommandJobRow>(
        `WITH listed AS (SELECT count(*)::int AS total FROM command_job_targets WHERE job_id = $1)
         UPDATE command_jobs
            SET total = (SELECT total FROM listed),
                state = CASE WHEN (SELECT total FROM listed) = 0 THEN 'completed' ELSE 'running' END,
                finished_at = CASE WHEN (SELECT total FROM listed) = 0 THEN now() END,
                next_batch_at = now(), updated_at = now()
          WHERE id = $1 AND state = 'preparing'
          RETURNING ${COLUMNS}`,
        [id],
      );
      return rows[0] ?? null;
    },

    async find(db: Queryable, tenantId: string, id: string, lock = false): Promise<CommandJobRow | null> {
      const { rows } = await db.query<CommandJobRow>(`SELECT ${COLUMNS} FROM command_jobs WHERE id = $1 AND tenant_id = $2${lock ? ' FOR UPDATE' : ''}`, [id, tenantId]);
      return rows[0] ?? null;
    },

    async list(db: Queryable, page: { tenantId: string; limit: number; after: PageKey | undefined }): Promise<CommandJobRow[]> {
      const values: unknown[] = [page.limit + 1, page.tenantId];
      const { rows } = await db.query<CommandJobRow>(
        `SELECT ${COLUMNS} FROM command_jobs WHERE tenant_id = $2 AND ${afterKey(values, page.after, '::uuid')} ORDER BY created_at, id LIMIT $1`,
        values,
      );
      return rows;
    },

    /** Every target once: by the state of its command, or what stands in for one. */
    async counts(db: Queryable, id: string): Promise<TargetCount[]> {
      const { rows } = await db.query<TargetCount>(
        `SELECT CASE WHEN t.state = 'created' THEN coalesce(c.state, 'deleted')
                     WHEN t.state = 'pending' THEN 'scheduled'
                     ELSE t.state END AS state,
                CASE WHEN t.state IN ('failed', 'canceled') THEN t.reason END AS reason,
                count(*)::int AS count
           FROM command_job_targets t LEFT JOIN commands c ON c.id = t.command_id
          WHERE t.job_id = $1
          GROUP BY 1, 2`,
        [id],
      );
      return rows;
    },

    /**
     * Whether any job has a batch due: one statement outside a transaction,
     * so that a replica with no job to run asks Postgres once per look
     * instead of opening a transaction (three round trips) to find none.
     */
    async anyDue(db: Queryable): Promise<boolean> {
      const { rows } = await db.query<{ due: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM command_jobs WHERE ${DUE}) AS due`,
      );
      return rows[0]?.due === true;
    },

    /** The job whose next batch is due the longest, locked for this transaction; null when none is due (or all are taken). */
    async lockDue(db: Queryable): Promise<CommandJobRow | null> {
      const { rows } = await db.query<CommandJobRow>(
        `SELECT ${COLUMNS} FROM command_jobs
          WHERE ${DUE}
          ORDER BY next_batch_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
      );
      return rows[0] ?? null;
    },

    async pendingTargets(db: Queryable, id: string, limit: number): Promise<string[]> {
      const { rows } = await db.query<{ device_id: string }>(
        `SELECT device_id FROM command_job_targets WHERE job_id = $1 AND state = 'pending' ORDER BY device_id LIMIT $2`,
        [id, limit],
      );
      return rows.map((row) => row.device_id);
    },

    /**
     * The devices among `ids` that are still the tenant's, locked against
     * other creates (so the pending count holds until the commit), with their
     * unfinished commands.
     */
    async lockDevices(db: Queryable, tenantId: string, ids: readonly string[]): Promise<Map<string, { disabled: boolean; unfinished: number }>> {
      const { rows: locked } = await db.query<{ id: string; disabled: boolean }>(
        `SELECT id, disabled FROM devices WHERE id = ANY($1::uuid[]) AND tenant_id = $2 ORDER BY id FOR UPDATE`,
        [ids, tenantId],
      );
      const { rows: unfinished } = await db.query<{ device_id: string; count: number }>(
        `SELECT device_id, count(*)::int AS count FROM commands WHERE device_id = ANY($1::uuid[]) AND finished_at IS NULL GROUP BY device_id`,
        [locked.map((row) => row.id)],
      );
      const counts = new Map(unfinished.map((row) => [row.device_id, row.count]));
      return new Map(locked.map((row) => [row.id, { disabled: row.disabled, unfinished: counts.get(row.id) ?? 0 }]));
    },

    async settleTargets(db: Queryable, id: string, outcomes: readonly TargetOutcome[]): Promise<void> {
      await db.query(
        `UPDATE command_job_targets t SET state = o.state, reason = o.reason, command_id = o.command_id
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[]) AS o(device_id, state, reason, command_id)
          WHERE t.job_id = $1 AND t.device_id = o.device_id`,
        [id, outcomes.map((o) => o.deviceId), outcomes.map((o) => o.state), outcomes.map((o) => o.reason), outcomes.map((o) => o.commandId)],
      );
    },

    /** Targets that got no command yet never will: the job was canceled. */
    async cancelPendingTargets(db: Queryable, id: string): Promise<void> {
      await db.query(`UPDATE command_job_targets SET state = 'canceled', reason = 'job_canceled' WHERE job_id = $1 AND state = 'pending'`, [id]);
    },

    async hasUnfinishedCommands(db: Queryable, id: string, onlyQueued = false): Promise<boolean> {
      const { rows } = await db.query(
        `SELECT 1 FROM commands WHERE job_id = $1 AND finished_at IS NULL${onlyQueued ? ` AND state = 'queued'` : ''} LIMIT 1`,
        [id],
      );
      return rows.length > 0;
    },

    /** The next batch is due `seconds` after the last one was (lagging at most a second behind now, so a late replica catches up but never bursts). */
    async delay(db: Queryable, id: string, seconds: number): Promise<void> {
      await db.query(
        `UPDATE command_jobs SET next_batch_at = greatest(next_batch_at, now() - interval '1 second') + $2::float8 * interval '1 second', updated_at = now() WHERE id = $1`,
        [id, seconds],
      );
    },

    /** Looked at again in `seconds` (a job that waits for its commands to finish, or for publishes in flight). */
    async recheckIn(db: Queryable, id: string, seconds: number): Promise<void> {
      await db.query(`UPDATE command_jobs SET next_batch_at = now() + $2::float8 * interval '1 second' WHERE id = $1`, [id, seconds]);
    },

    async setState(db: Queryable, id: string, state: CommandJobState, options: { reason?: string | null; finished: boolean }): Promise<CommandJobRow> {
      const { rows } = await db.query<CommandJobRow>(
        `UPDATE command_jobs
            SET state = $2, reason = coalesce($3, reason), updated_at = now(),
                finished_at = CASE WHEN $4 THEN now() END, next_batch_at = now() + interval '1 second'
          WHERE id = $1 RETURNING ${COLUMNS}`,
        [id, state, options.reason ?? null, options.finished],
      );
      return rows[0] as CommandJobRow;
    },

    async deleteFinishedBefore(db: Queryable, days: number, limit: number): Promise<number> {
      const { rowCount } = await db.query(
        `DELETE FROM command_jobs WHERE id IN (
           SELECT id FROM command_jobs WHERE finished_at < now() - $1::int * interval '1 day' ORDER BY finished_at LIMIT $2)`,
        [days, limit],
      );
      return rowCount ?? 0;
    },
  };
}

export type CommandJobRepository = ReturnType<typeof createCommandJobRepository>;
