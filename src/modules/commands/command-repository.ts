import { afterKey } from '../../infra/sql.js';
import type { Queryable } from '../../infra/transaction.js';
import type { Actor } from '../../lib/actor.js';
import { auditColumns, auditInsertFrom, type AuditEntry } from '../audit/audit-repository.js';
import type { PageKey } from '../../lib/pagination.js';
import { isFinished, nextState, STATE_VARIANTS, SERVICE_EXPIRY_REASONS, type CommandEvent, type CommandState } from '../../lib/command-states.js';

export type CommandSource = 'api' | 'kafka' | 'job';

export interface CommandRow {
  id: string;
  /** Creation order (exact where timestamps tie), as text. */
  seq: string;
  tenant_id: string;
  device_id: string;
  name: string;
  params: Record<string, unknown>;
  state: CommandState;
  reason: string | null;
  source: CommandSource;
  idempotency_key: string | null;
  request_digest: string;
  ttl_s: number;
  response_timeout_s: number | null;
  emqx_message_id: string | null;
  attempts: number;
  last_error: string | null;
  send_after: Date | null;
  lease_until: Date | null;
  possibly_sent: boolean;
  lost_message_id: string | null;
  woken_at: Date | null;
  created_at: Date;
  updated_at: Date;
  expires_at: Date;
  sent_at: Date | null;
  delivered_at: Date | null;
  acked_at: Date | null;
  finished_at: Date | null;
  reply_due_at: Date | null;
  reply_status: 'ok' | 'error' | null;
  reply_result: unknown;
  replied_at: Date | null;
  /** The command job that made it, if one did. */
  job_id: string | null;
  created_us: string;
}

/** A command leased to be published, and whether it was possibly sent before this attempt. */
export interface ClaimedRow extends CommandRow {
  was_possibly_sent: boolean;
}

/** A row changed by a transition, with the state it left. */
export interface TransitionedRow extends CommandRow {
  previous_state: CommandState;
}

/** What the rest of the service is told of a command that changed: which one, and where it now stands. */
export type CommandChange = Pick<CommandRow, 'id' | 'state' | 'finished_at'>;

/** One record for commands.status.{tenant}, waiting in the outbox. */
export interface StatusRecordRow {
  id: string;
  command_id: string;
  tenant_id: string;
  device_id: string;
  name: string;
  state: CommandState;
  previous_state: CommandState | null;
  reason: string | null;
  idempotency_key: string | null;
  job_id: string | null;
  at: Date;
}

export interface NewCommand {
  id: string;
  /** Only on a device of this tenant (a tenant-scoped token, a tenant's request topic); null: any. */
  tenantId: string | null;
  deviceId: string;
  name: string;
  params: Record<string, unknown>;
  source: CommandSource;
  idempotencyKey: string | null;
  requestDigest: string;
  ttlS: number;
  responseTimeoutS: number | null;
  at: Date;
  /** Nothing is created while the device has this many unfinished commands. */
  maxUnfinished: number;
  /** Who creates it, recorded in the audit log by the same statement; null: not audited (a command request from Kafka). */
  audit: { actor: Actor; entry: Pick<AuditEntry, 'action' | 'objectType' | 'details'> } | null;
}

/** What a create found: the new command, the one made earlier under the key, or why none was made. */
export type CreateOutcome =
  | { kind: 'created'; command: CommandRow }
  | { kind: 'existing'; command: CommandRow }
  | { kind: 'no_device' }
  | { kind: 'other_tenant'; deviceTenant: string }
  | { kind: 'disabled' }
  | { kind: 'too_many' };

export interface CommandDepths {
  /** Commands not finished, by state (acked ones that wait for a reply among them). */
  readonly unfinished: Readonly<Record<string, number>>;
  /** Status records not yet on Kafka. */
  readonly outbox: number;
}

/** Columns a transition also sets: `value` overwrites, `first` keeps a value already there. */
export interface TransitionSets {
  readonly value?: Readonly<Record<string, unknown>>;
  readonly first?: Readonly<Record<string, unknown>>;
}

const columns = (alias: string) =>
  [
    'id',
    'seq::text AS seq',
    'tenant_id',
    'device_id',
    'name',
    'params',
    'state',
    'reason',
    'source',
    'idempotency_key',
    'request_digest',
    'ttl_s',
    'response_timeout_s',
    'emqx_message_id',
    'attempts',
    'last_error',
    'send_after',
    'lease_until',
    'possibly_sent',
    'lost_message_id',
    'woken_at',
    'created_at',
    'updated_at',
    'expires_at',
    'sent_at',
    'delivered_at',
    'acked_at',
    'finished_at',
    'reply_due_at',
    'reply_status',
    'reply_result',
    'replied_at',
    'job_id',
    `(extract(epoch FROM ${alias}.created_at) * 1000000)::bigint::text AS created_us`,
  ]
    .map((column) => (column.startsWith('(') ? column : `${alias}.${column}`))
    .join(', ');

const COLUMNS = columns('commands');

/**
 * What a transition reads back: the whole command (`rows`), or only the
 * change (`changes`) for the publish answers and delivery events, which
 * need no more: the three of every command would otherwise read back its
 * params (up to 64 KiB) and nine timestamps each. Either way the status
 * record is written from the columns it needs.
 */
const MOVED = {
  rows: { returning: `${columns('c')}, p.state AS previous_state`, select: '*' },
  changes: {
    returning: 'c.id, c.tenant_id, c.device_id, c.name, c.state, c.reason, c.idempotency_key, c.job_id, c.updated_at, c.finished_at, c.seq, p.state AS previous_state',
    select: 'id, state, finished_at',
  },
};
/** Column names a transition may set (they are written into the SQL, so only these). */
const SETTABLE = new Set(['emqx_message_id', 'sent_at', 'delivered_at', 'acked_at', 'reply_due_at', 'reply_status', 'reply_result', 'replied_at', 'last_error']);

const OUTBOX_INSERT = `INSERT INTO command_status_outbox (command_id, tenant_id, device_id, name, state, previous_state, reason, idempotency_key, job_id, at)`;

/**
 * A queued command (`commands`) that is not the head of its device's queue:
 * an older one is queued too. Only the head has a send_after (migration
 * 0009's triggers keep it so); a publish of another (sent again after a lost
 * session while a newer one was under way) leaves it waiting.
 */
const OLDER_QUEUED = `EXISTS (SELECT 1 FROM commands o WHERE o.device_id = commands.device_id AND o.state = 'queued' AND o.seq < commands.seq)`;

/** States as an SQL list. They are written into the SQL (not bound) so that the partial indexes on `state` apply. */
const stateList = (states: readonly CommandState[]) => `(${states.map((state) => `'${state}'`).join(', ')})`;

type Variant = (typeof STATE_VARIANTS)[number];

/** What `event` does, one move per state it leads to: the states (with the reasons that matter) it moves `from` to `to`. */
function movesOf(event: CommandEvent): { to: CommandState; from: Variant[] }[] {
  const moves: { to: CommandState; from: Variant[] }[] = [];
  for (const from of STATE_VARIANTS) {
    const to = nextState(from.state, event, from.reason);
    if (to === null) continue;
    const move = moves.find((candidate) => candidate.to === to);
    if (move) move.from.push(from);
    else moves.push({ to, from: [from] });
  }
  return moves;
}

const SERVICE_REASONS = `(${SERVICE_EXPIRY_REASONS.map((reason) => `'${reason}'`).join(', ')})`;

/** The SQL condition (over `alias`) of a command in one of `variants`. */
function variantsSql(variants: readonly Variant[], alias: string): string {
  const plain = variants.filter((variant) => variant.state !== 'expired').map((variant) => variant.state);
  const conditions = plain.length > 0 ? [`${alias}state IN ${stateList(plain)}`] : [];
  for (const variant of variants.filter((candidate) => candidate.state === 'expired')) {
    conditions.push(
      variant.reason === null
        ? `(${alias}state = 'expired' AND (${alias}reason IS NULL OR ${alias}reason NOT IN ${SERVICE_REASONS}))`
        : `(${alias}state = 'expired' AND ${alias}reason = '${variant.reason}')`,
    );
  }
  return `(${conditions.join(' OR ')})`;
}

/** `finished_at` of a command entering `to`; a command waits for a reply when it has a response timeout. */
function finishedAtSql(to: CommandState, at: string): string {
  if (isFinished(to, true)) return `${at}::timestamptz`;
  if (isFinished(to, false)) return `CASE WHEN c.response_timeout_s IS NULL THEN ${at}::timestamptz END`;
  return 'NULL';
}

/** A state change: the event, and what the change records. */
export interface Transition {
  event: CommandEvent;
  reason: string | null;
  /** The reason as SQL over `p.state` (the state the command leaves), instead of `reason`. */
  reasonSql?: string;
  at: Date;
  sets?: TransitionSets;
  /**
   * Further assignments, as SQL over `c` (the command as it was), values
   * bound through `param`; the repository's own, never a caller's input.
   */
  setsSql?: (param: (value: unknown) => string) => readonly string[];
}

/** The select of a transition (see `transition`). */
type TransitionSelect = (param: (value: unknown) => string, movable: string, movableOfC: string) => string;

/** Commands and their status outbox, in Postgres. */
export function createCommandRepository() {
  /**
   * Applies `change.event` to the commands `selectSql` picks (an `id, state,
   * reason` select that locks them; `movable` is its condition on the states
   * the event moves, `movableOfC` the same over the alias `c`) and writes one status record per command moved, in one
   * statement per state the event leads to. Only commands still in a state
   * the event moves change: whatever else happened to them meanwhile wins.
   * Answers the commands moved, or with `readBack` 'changes' only their changes (MOVED).
   */
  function transition(db: Queryable, selectSql: TransitionSelect, change: Transition): Promise<TransitionedRow[]>;
  function transition(db: Queryable, selectSql: TransitionSelect, change: Transition, readBack: 'changes'): Promise<CommandChange[]>;
  async function transition(
    db: Queryable,
    selectSql: TransitionSelect,
    change: Transition,
    readBack: keyof typeof MOVED = 'rows',
  ): Promise<CommandChange[]> {
    const shape = MOVED[readBack];
    const moved: CommandChange[] = [];
    for (const { to, from } of movesOf(change.event)) {
      const values: unknown[] = [];
      const param = (value: unknown) => {
        values.push(value);
        return `$${values.length}`;
      };
      const select = selectSql(param, variantsSql(from, ''), variantsSql(from, 'c.'));
      const at = param(change.at);
      const reason = change.reasonSql ?? param(change.reason);
      const sets = [`state = ${param(to)}`, `reason = ${reason}`, `updated_at = ${at}`, 'lease_until = NULL', `finished_at = ${finishedAtSql(to, at)}`];
      for (const [mode, entries] of [['value', change.sets?.value], ['first', change.sets?.first]] as const) {
        for (const [column, value] of Object.entries(entries ?? {})) {
          if (!SETTABLE.has(column)) throw new Error(`a transition cannot set ${column}`);
          const placeholder = param(column === 'reply_result' && value !== null ? JSON.stringify(value) : value);
          sets.push(mode === 'value' ? `${column} = ${placeholder}` : `${column} = COALESCE(c.${column}, ${placeholder})`);
        }
      }
      sets.push(...(change.setsSql?.(param) ?? []));
      const { rows } = await db.query<CommandChange>(
        `WITH previous AS (${select}),
         changed AS (
           UPDATE commands c SET ${sets.join(', ')}
             FROM previous p
            WHERE c.id = p.id AND ${variantsSql(from, 'p.')}
           RETURNING ${shape.returning}
         ),
         recorded AS (
           ${OUTBOX_INSERT}
           SELECT id, tenant_id, device_id, name, state, previous_state, reason, idempotency_key, job_id, updated_at FROM changed
         )
         SELECT ${shape.select} FROM changed ORDER BY seq::bigint`,
        values,
      );
      moved.push(...rows);
    }
    return moved;
  }

  /** Applies `change.event` to one command, if it is in a state the event moves (and `when`, a condition on its columns, holds). */
  async function transitionOne(
    db: Queryable,
    id: string,
    change: Transition & { when?: (param: (value: unknown) => string) => string },
  ): Promise<TransitionedRow | null> {
    const rows = await transition(
      db,
      (param, movable) => `SELECT id, state, reason FROM commands WHERE id = ${param(id)} AND ${movable}${change.when ? ` AND ${change.when(param)}` : ''} FOR UPDATE`,
      change,
    );
    return rows[0] ?? null;
  }

  /**
   * Applies `change.event` to the command a delivery event names, in one
   * statement: by its command id (`commandId`, when the message carried it),
   * else by EMQX's message id — and only a command of `deviceId`.
   */
  async function transitionNamed(
    db: Queryable,
    target: { deviceId: string; commandId: string | null; emqxMessageId: string | null },
    change: Transition & { when?: (param: (value: unknown) => string) => string },
  ): Promise<TransitionedRow | null> {
    if (target.commandId === null && target.emqxMessageId === null) return null;
    const rows = await transition(
      db,
      (param, movable) => {
        const device = param(target.deviceId);
        const which =
          target.commandId !== null
            ? `id = ${param(target.commandId)}`
            : `id = (SELECT id FROM commands WHERE device_id = ${device} AND emqx_message_id = ${param(target.emqxMessageId)} ORDER BY seq DESC LIMIT 1)`;
        return `SELECT id, state, reason FROM commands WHERE ${which} AND device_id = ${device} AND ${movable}${change.when ? ` AND ${change.when(param)}` : ''} FOR UPDATE`;
      },
      change,
    );
    return rows[0] ?? null;
  }

  /**
   * Applies `change.event` to many commands, each named by its id and
   * device (delivery events of one kind that came together), in one
   * statement per state the event leads to. `messageIds` (command id →
   * EMQX's message id of its event) fills emqx_message_id where it is
   * missing and, with `skipLostMessage`, leaves a command alone whose lost
   * message the event is about. Answers one entry per target, in order: the
   * change of the command moved, or null (a repeat, or no such command of that device).
   */
  async function transitionNamedMany(
    db: Queryable,
    targets: readonly { deviceId: string; commandId: string }[],
    change: Transition,
    options: { messageIds: Readonly<Record<string, string | null>>; skipLostMessage: boolean },
  ): Promise<(CommandChange | null)[]> {
    const messageIds = JSON.stringify(options.messageIds);
    const rows = await transition(
      db,
      (param, _movable, movableOfC) => {
        const lost = options.skipLostMessage ? ` AND COALESCE(c.lost_message_id <> (${param(messageIds)}::jsonb ->> c.id::text), true)` : '';
        return `SELECT c.id, c.state, c.reason FROM commands c
                  JOIN unnest(${param(targets.map((target) => target.commandId))}::uuid[], ${param(targets.map((target) => target.deviceId))}::uuid[]) AS t(id, device_id)
                    ON c.id = t.id AND c.device_id = t.device_id
                 WHERE ${movableOfC}${lost}
                 ORDER BY c.id FOR UPDATE OF c`;
      },
      {
        ...change,
        setsSql: (param) => [...(change.setsSql?.(param) ?? []), `emqx_message_id = COALESCE(c.emqx_message_id, ${param(messageIds)}::jsonb ->> c.id::text)`],
      },
      'changes',
    );
    const byId = new Map(rows.map((row) => [row.id, row]));
    // A command named twice moved once: the first naming gets it.
    return targets.map((target) => {
      const row = byId.get(target.commandId) ?? null;
      byId.delete(target.commandId);
      return row;
    });
  }

  /**
   * `create` for several commands of different devices at once, in one
   * statement: the devices' rows are locked in id order (so two such
   * statements cannot deadlock), and each command is judged as `create`
   * judges it alone. Answers one outcome per command, in order.
   */
  async function createMany(db: Queryable, commands: readonly NewCommand[]): Promise<CreateOutcome[]> {
    if (new Set(commands.map((command) => command.deviceId.toLowerCase())).size !== commands.length) {
      throw new Error('createMany takes at most one command per device');
    }
    const column = <T>(pick: (command: NewCommand) => T) => commands.map(pick);
    const { rows } = await db.query<CommandRow & { device_tenant_id: string | null; device_disabled: boolean | null; created: boolean | null }>(
      `WITH request AS (
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::int[],
                              $11::timestamptz[], $12::timestamptz[], $13::int[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[])
           WITH ORDINALITY AS r(id, device_id, tenant_id, name, params, source, idempotency_key, request_digest, ttl_s, response_timeout_s,
                                at, expires_at, max_unfinished, audit_actor, audit_action, audit_object_type, audit_request_id, audit_source_ip, audit_details, position)
       ),
       device AS (
         SELECT id, tenant_id, disabled FROM devices WHERE id = ANY($2::uuid[]) ORDER BY id FOR UPDATE
       ),
       existing AS (
         SELECT k.*, r.position AS request_position
           FROM request r JOIN device d ON d.id = r.device_id, commands_with_idempotency_key(d.tenant_id, d.id, r.idempotency_key) k
          WHERE r.idempotency_key IS NOT NULL
       ),
       inserted AS (
         INSERT INTO commands (id, tenant_id, device_id, name, params, state, source, idempotency_key, request_digest,
                               ttl_s, response_timeout_s, send_after, created_at, updated_at, expires_at)
         SELECT r.id, d.tenant_id, d.id, r.name, r.params::jsonb, 'queued', r.source, r.idempotency_key, r.request_digest,
                r.ttl_s, r.response_timeout_s, now(), r.at, r.at, r.expires_at
           FROM request r JOIN device d ON d.id = r.device_id
          WHERE (r.tenant_id IS NULL OR d.tenant_id = r.tenant_id) AND NOT d.disabled
            AND NOT EXISTS (SELECT 1 FROM existing e WHERE e.request_position = r.position)
            AND commands_unfinished(d.id) < r.max_unfinished
          ORDER BY r.position
         ON CONFLICT (tenant_id, device_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING *
       ),
       recorded AS (
         ${OUTBOX_INSERT}
         SELECT id, tenant_id, device_id, name, state, NULL, NULL, idempotency_key, job_id, created_at FROM inserted
       ),
       audited AS (
         ${auditInsertFrom('inserted i JOIN request r ON r.id = i.id WHERE r.audit_action IS NOT NULL', {
           at: 'i.created_at',
           actor: 'r.audit_actor',
           action: 'r.audit_action',
           objectType: 'r.audit_object_type',
           objectId: 'i.id::text',
           tenantId: 'i.tenant_id',
           requestId: 'r.audit_request_id',
           sourceIp: 'r.audit_source_ip',
           details: 'r.audit_details::jsonb',
         })}
       )
       SELECT d.tenant_id AS device_tenant_id, d.disabled AS device_disabled, c.created, ${columns('c')}
         FROM request r
         LEFT JOIN device d ON d.id = r.device_id
         LEFT JOIN LATERAL (
           SELECT true AS created, i.*, NULL::bigint AS request_position FROM inserted i WHERE i.id = r.id
           UNION ALL
           SELECT false, e.* FROM existing e WHERE e.request_position = r.position
         ) c ON true
        ORDER BY r.position`,
      [
        column((command) => command.id),
        column((command) => command.deviceId),
        column((command) => command.tenantId),
        column((command) => command.name),
        column((command) => JSON.stringify(command.params)),
        column((command) => command.source),
        column((command) => command.idempotencyKey),
        column((command) => command.requestDigest),
        column((command) => command.ttlS),
        column((command) => command.responseTimeoutS),
        column((command) => command.at.toISOString()),
        column((command) => new Date(command.at.getTime() + command.ttlS * 1000).toISOString()),
        column((command) => command.maxUnfinished),
        ...auditColumns(commands.map((command) => command.audit)),
      ],
    );
    return commands.map((command, index): CreateOutcome => {
      const row = rows[index];
      if (!row || row.device_tenant_id === null) return { kind: 'no_device' };
      const { device_tenant_id: deviceTenant, device_disabled: disabled, created, ...found } = row;
      if (command.tenantId !== null && deviceTenant !== command.tenantId) return { kind: 'other_tenant', deviceTenant };
      if (created === true) return { kind: 'created', command: found };
      if (created === false) return { kind: 'existing', command: found };
      return disabled ? { kind: 'disabled' } : { kind: 'too_many' };
    });
  }

  return {
    transitionOne,
    transitionNamed,
    transitionNamedMany,

    /**
     * Creates a queued command, with its first status record and (given
     * `audit`) its audit entry, in one statement — what a create needs and
     * nothing more, so one round trip. The statement locks the device's row
     * first, so creates for one device take turns; the idempotency key and
     * the unfinished commands are then read by migration 0011's functions,
     * which see every create that held the lock before. Nothing is created
     * when the device is not in `tenantId` (if given) or is disabled, when
     * the key was used, or when the device has `maxUnfinished` commands
     * unfinished: the outcome says which.
     */
    async create(db: Queryable, command: NewCommand): Promise<CreateOutcome> {
      const [outcome] = await createMany(db, [command]);
      return outcome as CreateOutcome;
    },

    createMany,

    /**
     * Inserts a job's queued commands, one per device (the job's own device
     * set makes the idempotency), with their first status records, in one
     * statement. Times are Postgres' own.
     */
    async insertForJob(
      db: Queryable,
      job: { id: string; tenantId: string; name: string; params: Record<string, unknown>; requestDigest: string; ttlS: number; responseTimeoutS: number | null },
      targets: readonly { commandId: string; deviceId: string }[],
    ): Promise<CommandRow[]> {
      if (targets.length === 0) return [];
      const { rows } = await db.query<CommandRow>(
        `WITH inserted AS (
           INSERT INTO commands (id, tenant_id, device_id, name, params, state, source, request_digest,
                                 ttl_s, response_timeout_s, send_after, created_at, updated_at, expires_at, job_id)
           SELECT t.id, $3, t.device_id, $4, $5, 'queued', 'job', $6, $7::int, $8::int, now(), now(), now(), now() + $7::int * interval '1 second', $9::uuid
             FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(id, device_id, position)
            ORDER BY t.position
           RETURNING *
         ),
         recorded AS (
           ${OUTBOX_INSERT}
           SELECT id, tenant_id, device_id, name, state, NULL, NULL, idempotency_key, job_id, created_at FROM inserted
         )
         SELECT ${columns('inserted')} FROM inserted ORDER BY inserted.seq`,
        [
          targets.map((target) => target.commandId),
          targets.map((target) => target.deviceId),
          job.tenantId,
          job.name,
          JSON.stringify(job.params),
          job.requestDigest,
          job.ttlS,
          job.responseTimeoutS,
          job.id,
        ],
      );
      return rows;
    },

    /** Cancels the job's commands that EMQX has not been handed and that no publish is sending (Postgres' clock). */
    cancelForJob(db: Queryable, jobId: string, at: Date): Promise<TransitionedRow[]> {
      return transition(
        db,
        (param, movable) =>
          `SELECT id, state FROM commands
            WHERE job_id = ${param(jobId)} AND finished_at IS NULL AND ${movable}
              AND NOT possibly_sent AND (lease_until IS NULL OR lease_until <= now())
            FOR UPDATE SKIP LOCKED`,
        { event: 'canceled', reason: 'canceled', at },
      );
    },

    async findById(db: Queryable, id: string): Promise<CommandRow | null> {
      const { rows } = await db.query<CommandRow>(`SELECT ${COLUMNS} FROM commands WHERE id = $1`, [id]);
      return rows[0] ?? null;
    },

    /** The device of each of these commands that exists. */
    async devicesOf(db: Queryable, ids: readonly string[]): Promise<Map<string, string>> {
      const { rows } = await db.query<{ id: string; device_id: string }>('SELECT id, device_id FROM commands WHERE id = ANY($1::uuid[])', [ids]);
      return new Map(rows.map((row) => [row.id, row.device_id]));
    },

    async findByIdempotencyKey(db: Queryable, tenantId: string, deviceId: string, key: string): Promise<CommandRow | null> {
      const { rows } = await db.query<CommandRow>(`SELECT ${COLUMNS} FROM commands WHERE tenant_id = $1 AND device_id = $2 AND idempotency_key = $3`, [
        tenantId,
        deviceId,
        key,
      ]);
      return rows[0] ?? null;
    },

    async findByEmqxMessageId(db: Queryable, deviceId: string, emqxMessageId: string): Promise<CommandRow | null> {
      const { rows } = await db.query<CommandRow>(
        `SELECT ${COLUMNS} FROM commands WHERE device_id = $1 AND emqx_message_id = $2 ORDER BY commands.seq DESC LIMIT 1`,
        [deviceId, emqxMessageId],
      );
      return rows[0] ?? null;
    },

    /** Commands of the device that are not finished: queued, sent, delivered, or acked and waiting for a reply. */
    async countUnfinished(db: Queryable, deviceId: string): Promise<number> {
      const { rows } = await db.query<{ count: string }>(
        `SELECT count(*) AS count FROM commands WHERE device_id = $1 AND finished_at IS NULL`,
        [deviceId],
      );
      return Number(rows[0]?.count ?? 0);
    },

    async listByDevice(
      db: Queryable,
      page: { tenantId: string; deviceId: string; state?: CommandState; limit: number; after: PageKey | undefined },
    ): Promise<CommandRow[]> {
      const values: unknown[] = [page.limit + 1, page.deviceId, page.tenantId];
      let state = '';
      if (page.state !== undefined) {
        values.push(page.state);
        state = ` AND state = $${values.length}`;
      }
      const { rows } = await db.query<CommandRow>(
        `SELECT ${COLUMNS} FROM commands
          WHERE device_id = $2 AND tenant_id = $3${state} AND ${afterKey(values, page.after, '::uuid')}
          ORDER BY created_at, id LIMIT $1`,
        values,
      );
      return rows;
    },

    /**
     * Cancels a queued command no publish may have reached EMQX with (a claim
     * marks it possibly sent until a definite answer); null when it is not
     * such a command (any more).
     */
    cancel(db: Queryable, id: string, at: Date): Promise<TransitionedRow | null> {
      return transitionOne(db, id, { event: 'canceled', reason: 'canceled', at, when: () => 'NOT possibly_sent' });
    },

    /**
     * Whether a cancel of this queued command may still succeed: a publish of
     * it is under way now (its lease runs, by Postgres' clock), or its
     * possibly-sent mark was cleared since the cancel looked.
     */
    async mayCancelSoon(db: Queryable, id: string): Promise<boolean> {
      const { rows } = await db.query<{ soon: boolean }>(
        `SELECT state = 'queued' AND (lease_until > now() OR NOT possibly_sent) AS soon FROM commands WHERE id = $1`,
        [id],
      );
      return rows[0]?.soon ?? false;
    },

    /**
     * Commands past expires_at that were never acked → expired; the reason
     * says how far each got. A command whose publish is under way is left to
     * its answer, and one EMQX may hold (sent, delivered, or possibly sent) is
     * given `graceMs` more: EMQX may still take the device's PUBACK.
     */
    expireDue(db: Queryable, now: Date, limit: number, graceMs: number): Promise<TransitionedRow[]> {
      return transition(
        db,
        (param, movable) =>
          `SELECT id, state, reason FROM commands
            WHERE ${movable} AND expires_at <= ${param(now)}
              AND CASE WHEN state = 'queued' AND NOT possibly_sent THEN lease_until IS NULL OR lease_until <= now()
                       ELSE expires_at <= ${param(new Date(now.getTime() - graceMs))} AND (lease_until IS NULL OR lease_until <= now()) END
            ORDER BY expires_at LIMIT ${param(limit)} FOR UPDATE SKIP LOCKED`,
        {
          event: 'expired_by_sweeper',
          reason: null,
          reasonSql: `CASE WHEN p.state = 'queued' AND NOT c.possibly_sent THEN 'not_sent' WHEN p.state = 'sent' THEN 'not_delivered' ELSE 'not_acked' END`,
          at: now,
        },
      );
    },

    /**
     * The device connected with a clean start at `connectedAt` (EMQX's
     * time): EMQX discarded its session and the commands it held unacked.
     * Those sent before that connect and not yet past their expiry are queued
     * again, due at once; what EMQX lost is remembered (lost_message_id) and
     * they stay possibly sent, as the device may have carried them out.
     */
    sessionLost(db: Queryable, deviceId: string, connectedAt: Date, at: Date): Promise<TransitionedRow[]> {
      return transition(
        db,
        (param, movable) =>
          `SELECT id, state, reason FROM commands
            WHERE device_id = ${param(deviceId)} AND ${movable}
              AND sent_at < ${param(connectedAt)} AND expires_at > ${param(at)}
            ORDER BY seq FOR UPDATE`,
        {
          event: 'session_lost',
          reason: 'session_lost',
          at,
          setsSql: () => [
            'lost_message_id = c.emqx_message_id',
            'emqx_message_id = NULL',
            'delivered_at = NULL',
            'possibly_sent = true',
            'send_after = now()',
            "last_error = 'session_lost'",
          ],
        },
      );
    },

    /** Acked commands whose reply did not come in time → timed_out. */
    timeOutDue(db: Queryable, now: Date, limit: number): Promise<TransitionedRow[]> {
      return transition(
        db,
        (param, movable) =>
          `SELECT id, state, reason FROM commands
            WHERE ${movable} AND reply_due_at <= ${param(now)}
            ORDER BY reply_due_at LIMIT ${param(limit)} FOR UPDATE SKIP LOCKED`,
        { event: 'reply_timed_out', reason: 'no_reply', at: now },
      );
    },

    /**
     * The devices were deleted, in this transaction: their commands take the
     * `device_deleted` event (queued ones are canceled, those EMQX holds
     * dropped, each with its status record), then every command of theirs is
     * deleted, so an id used again starts with no commands, idempotency keys
     * or pending count.
     */
    async purgeDevices(db: Queryable, deviceIds: readonly string[], at: Date): Promise<TransitionedRow[]> {
      // The queue triggers' per-device locks first, in their order: this transaction then never waits for them while holding rows.
      await db.query(`SELECT pg_advisory_xact_lock(731040212, hashtext(id::text)) FROM (SELECT DISTINCT unnest($1::uuid[]) AS id ORDER BY 1) sorted`, [deviceIds]);
      const ended = await transition(
        db,
        (param, movable) => `SELECT id, state, reason FROM commands WHERE device_id = ANY(${param(deviceIds)}::uuid[]) AND ${movable} FOR UPDATE`,
        { event: 'device_deleted', reason: 'device_deleted', at },
      );
      await db.query('DELETE FROM commands WHERE device_id = ANY($1::uuid[])', [deviceIds]);
      return ended;
    },

    /**
     * Leases the next commands to publish: the oldest queued command of each
     * device (so a device's commands go out one after another, in creation
     * order), when it is due and no publish of it is in flight. Only heads
     * have a send_after, so only they are read, however many commands wait
     * behind them; the NOT EXISTS holds the order should one not be. `deviceId`
     * limits the claim to one device. Each is marked possibly sent until a
     * definite answer clears it (a crash during the publish leaves it so);
     * `was_possibly_sent` is what it was before this attempt.
     */
    async claim(db: Queryable, options: { leaseMs: number; limit: number; deviceId?: string }): Promise<ClaimedRow[]> {
      const values: unknown[] = [options.leaseMs, options.limit];
      let device = '';
      if (options.deviceId !== undefined) {
        values.push(options.deviceId);
        device = ` AND c.device_id = $${values.length}`;
      }
      const { rows } = await db.query<ClaimedRow>(
        `WITH claimable AS (
           SELECT c.id, c.possibly_sent AS was_possibly_sent FROM commands c
            WHERE c.state = 'queued' AND c.send_after <= now()${device}
              AND (c.lease_until IS NULL OR c.lease_until <= now())
              AND NOT EXISTS (SELECT 1 FROM commands o WHERE o.device_id = c.device_id AND o.state = 'queued' AND o.seq < c.seq)
            ORDER BY c.send_after, c.seq
            LIMIT $2
            FOR UPDATE SKIP LOCKED
         )
         UPDATE commands SET lease_until = now() + $1 * interval '1 millisecond', attempts = commands.attempts + 1, possibly_sent = true
           FROM claimable WHERE commands.id = claimable.id
         RETURNING ${COLUMNS}, claimable.was_possibly_sent`,
        values,
      );
      return rows;
    },

    /**
     * EMQX answered 200 for these commands (each with EMQX's message id):
     * `sent`, in one statement. Those events moved on already (delivered
     * before this answer came) keep their state; they get the id and sent_at
     * they lack, and their lease ends.
     */
    async markPublished(db: Queryable, items: readonly { id: string; emqxMessageId: string | null }[], at: Date): Promise<CommandChange[]> {
      const ids = items.map((item) => item.id);
      const messageIds = JSON.stringify(Object.fromEntries(items.map((item) => [item.id, item.emqxMessageId])));
      const moved = await transition(
        db,
        (param, movable) => `SELECT id, state, reason FROM commands WHERE id = ANY(${param(ids)}::uuid[]) AND ${movable} ORDER BY id FOR UPDATE`,
        {
          event: 'published',
          reason: null,
          at,
          sets: { value: { sent_at: at, last_error: null } },
          setsSql: (param) => [`emqx_message_id = COALESCE(c.emqx_message_id, ${param(messageIds)}::jsonb ->> c.id::text)`],
        },
        'changes',
      );
      if (moved.length < items.length) {
        const movedIds = new Set(moved.map((row) => row.id));
        const others = ids.filter((id) => !movedIds.has(id));
        await db.query(
          `UPDATE commands SET emqx_message_id = COALESCE(emqx_message_id, $2::jsonb ->> id::text), sent_at = COALESCE(sent_at, $3),
                  lease_until = NULL, last_error = NULL
            WHERE id = ANY($1::uuid[])`,
          [others, messageIds, at],
        );
      }
      return moved;
    },

    /** EMQX answered 200 after the command had already moved on (events came first): keep its id, end the lease. */
    async noteHanded(db: Queryable, id: string, emqxMessageId: string | null, at: Date): Promise<void> {
      await db.query(
        `UPDATE commands SET emqx_message_id = COALESCE(emqx_message_id, $2), sent_at = COALESCE(sent_at, $3), lease_until = NULL, last_error = NULL WHERE id = $1`,
        [id, emqxMessageId, at],
      );
    },

    /**
     * EMQX answered 202 (nobody subscribed): the command waits for the
     * device's next subscription, or `recheckMs` should that event be lost.
     * If the device subscribed while the publish was under way, it is due
     * again at once. Nothing was queued, so the attempt's possibly-sent mark
     * goes back to what it was before it.
     */
    async awaitSubscriber(db: Queryable, id: string, options: { attemptStartedAt: Date; now: Date; recheckMs: number; wasPossiblySent: boolean }): Promise<void> {
      await db.query(
        `UPDATE commands
            SET lease_until = NULL, last_error = 'no_subscriber', updated_at = $3::timestamptz, possibly_sent = $5,
                send_after = CASE WHEN ${OLDER_QUEUED} THEN NULL
                                  WHEN woken_at >= $2::timestamptz THEN now() ELSE now() + $4 * interval '1 millisecond' END
          WHERE id = $1 AND state = 'queued'`,
        [id, options.attemptStartedAt, options.now, options.recheckMs, options.wasPossiblySent],
      );
    },

    /**
     * The publish failed; the command is tried again in `delayMs`. It stays
     * possibly sent when this attempt got no answer or an earlier one did.
     */
    async retryLater(db: Queryable, id: string, options: { error: string; possiblySent: boolean; now: Date; delayMs: number }): Promise<void> {
      await db.query(
        `UPDATE commands
            SET lease_until = NULL, last_error = $2, possibly_sent = $3, updated_at = $4,
                send_after = CASE WHEN ${OLDER_QUEUED} THEN NULL ELSE now() + $5 * interval '1 millisecond' END
          WHERE id = $1 AND state = 'queued'`,
        [id, options.error, options.possiblySent, options.now, options.delayMs],
      );
    },

    /** The device subscribed to its command topic: the head of its queue is due now. Returns how many it has queued. */
    async wake(db: Queryable, deviceId: string, now: Date): Promise<number> {
      const { rowCount } = await db.query(
        `UPDATE commands SET woken_at = $2::timestamptz, send_after = CASE WHEN send_after IS NOT NULL THEN LEAST(send_after, now()) END
          WHERE device_id = $1 AND state = 'queued'`,
        [deviceId, now],
      );
      return rowCount ?? 0;
    },

    /** Deletes up to `limit` commands that finished before `cutoff`; returns how many. */
    async deleteFinishedBefore(db: Queryable, cutoff: Date, limit: number): Promise<number> {
      const { rowCount } = await db.query(
        `DELETE FROM commands WHERE id IN (
           SELECT id FROM commands WHERE finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
        [cutoff, limit],
      );
      return rowCount ?? 0;
    },

    /**
     * Inside a transaction: the oldest status records (but those of
     * `skipTenants`), locked, when this transaction is the only one draining
     * the outbox (null when another is).
     */
    async takeStatusRecords(db: Queryable, limit: number, skipTenants: readonly string[] = []): Promise<StatusRecordRow[] | null> {
      const { rows: locked } = await db.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [STATUS_OUTBOX_LOCK_KEY]);
      if (!locked[0]?.locked) return null;
      const { rows } = await db.query<StatusRecordRow>(
        `SELECT id::text AS id, command_id, tenant_id, device_id, name, state, previous_state, reason, idempotency_key, job_id, at
           FROM command_status_outbox WHERE tenant_id <> ALL($2::text[]) ORDER BY command_status_outbox.id LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [limit, skipTenants],
      );
      return rows;
    },

    async deleteStatusRecords(db: Queryable, ids: readonly string[]): Promise<void> {
      await db.query('DELETE FROM command_status_outbox WHERE id = ANY($1::bigint[])', [ids]);
    },

    /** Unfinished commands by state (queued ones are the queue depth), and status records not yet produced. */
    async depths(db: Queryable): Promise<CommandDepths> {
      const { rows } = await db.query<{ state: string | null; count: string }>(
        `SELECT state, count(*) AS count FROM commands WHERE finished_at IS NULL GROUP BY state
         UNION ALL
         SELECT NULL, count(*) FROM command_status_outbox`,
      );
      const unfinished: Record<string, number> = {};
      let outbox = 0;
      for (const row of rows) {
        if (row.state === null) outbox = Number(row.count);
        else unfinished[row.state] = Number(row.count);
      }
      return { unfinished, outbox };
    },
  };
}

/**
 * One drainer of the status outbox at a time across replicas: records of one
 * device then reach Kafka in the order their changes were committed.
 */
const STATUS_OUTBOX_LOCK_KEY = 7_310_402_119;

export type CommandRepository = ReturnType<typeof createCommandRepository>;
