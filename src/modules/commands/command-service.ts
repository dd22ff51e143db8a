import { hash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool } from 'pg';
import { withTransaction, type Queryable } from '../../infra/transaction.js';
import type { Actor } from '../../lib/actor.js';
import type { Clock } from '../../lib/clock.js';
import { BadRequestError, ConflictError, NotFoundError, TooManyRequestsError } from '../../lib/errors.js';
import { isCommandId } from '../../lib/identifiers.js';
import { parseCursor, toPage, type Page } from '../../lib/pagination.js';
import type { AuditRepository } from '../audit/audit-repository.js';
import type { DeviceRepository, DeviceRow } from '../devices/device-repository.js';
import { findVisibleDevice } from '../devices/device-service.js';
import type { CommandRepository, CommandRow, CommandSource, CreateOutcome, NewCommand, TransitionedRow } from './command-repository.js';
import { createTurnBatcher, type Settled } from '../../lib/turn-batcher.js';
import type { CommandWaiters } from './command-waiters.js';
import { DEFAULT_RESPONSE_TIMEOUT_S, DEFAULT_TTL_S } from './command-schemas.js';
import { nextState, type CommandState } from '../../lib/command-states.js';

export interface CommandView {
  id: string;
  device_id: string;
  tenant_id: string;
  name: string;
  params: Record<string, unknown>;
  state: CommandState;
  reason: string | null;
  source: CommandSource;
  idempotency_key: string | null;
  ttl_s: number;
  response_timeout_s: number | null;
  created_at: string;
  updated_at: string;
  expires_at: string;
  sent_at: string | null;
  delivered_at: string | null;
  acked_at: string | null;
  finished_at: string | null;
  attempts: number;
  last_error: string | null;
  emqx_message_id: string | null;
  reply: { status: 'ok' | 'error'; result: unknown; replied_at: string } | null;
  job_id: string | null;
}

const iso = (date: Date | null) => date?.toISOString() ?? null;

export function toCommandView(row: CommandRow): CommandView {
  return {
    id: row.id,
    device_id: row.device_id,
    tenant_id: row.tenant_id,
    name: row.name,
    params: row.params,
    state: row.state,
    reason: row.reason,
    source: row.source,
    idempotency_key: row.idempotency_key,
    ttl_s: row.ttl_s,
    response_timeout_s: row.response_timeout_s,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    expires_at: row.expires_at.toISOString(),
    sent_at: iso(row.sent_at),
    delivered_at: iso(row.delivered_at),
    acked_at: iso(row.acked_at),
    finished_at: iso(row.finished_at),
    attempts: row.attempts,
    last_error: row.last_error,
    emqx_message_id: row.emqx_message_id,
    reply:
      row.reply_status !== null && row.replied_at !== null
        ? { status: row.reply_status, result: row.reply_result ?? null, replied_at: row.replied_at.toISOString() }
        : null,
    job_id: row.job_id,
  };
}

export interface CommandInput {
  name: string;
  params?: Record<string, unknown>;
  ttl_s?: number;
  response_timeout_s?: number;
}

/** Why a command request from Kafka can never become a command: its dead letter's reason. */
export type RefusalReason =
  | 'invalid_json'
  | 'invalid_request'
  | 'key_mismatch'
  | 'unknown_device'
  | 'tenant_mismatch'
  | 'device_disabled'
  | 'idempotency_conflict';

export class CommandRequestRefused extends Error {
  override name = 'CommandRequestRefused';
  constructor(
    readonly reason: RefusalReason,
    detail: string,
  ) {
    super(detail);
  }
}

/** JSON with object keys sorted, so that equal requests digest alike whatever their key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export interface CommandServiceDeps {
  pool: Pool;
  commands: CommandRepository;
  devices: Pick<DeviceRepository, 'findById'>;
  audit: AuditRepository;
  clock: Clock;
  maxPendingPerDevice: number;
  /** Devices may reply (COMMAND_REPLIES=enabled); new commands then wait for a reply after the ack. */
  repliesEnabled: boolean;
  /**
   * How long a cancel waits for a publish of the command under way to be
   * answered: longer than the EMQX API call may take.
   */
  cancelWaitMs: number;
  /** Told of every committed state change (creation included), after the commit. */
  changed(rows: readonly (CommandRow | TransitionedRow)[]): void;
  waiters: Pick<CommandWaiters, 'until'>;
}

/** How often a cancel looks again whether the publish it waits for was answered. */
const CANCEL_POLL_MS = 25;

type Created = { command: CommandRow; created: boolean };
type Resolved = {
  request: { name: string; params: Record<string, unknown>; ttl_s: number; response_timeout_s: number | null };
  digest: string;
};

export function createCommandService(deps: CommandServiceDeps) {
  const { pool, commands, devices, audit, clock } = deps;

  /**
   * The creates of one turn of the event loop go to Postgres together: one
   * statement for the first create of each device, then one for the second,
   * and so on, so that one device's creates keep their order. A statement
   * that fails is tried again create by create, so that one create's error
   * is its own.
   */
  const createInTurn = createTurnBatcher<NewCommand, Settled<CreateOutcome>>(async (batch) => {
    const settled: Settled<CreateOutcome>[] = new Array(batch.length);
    const rounds: number[][] = [];
    const seen = new Map<string, number>();
    batch.forEach((command, index) => {
      // A UUID in either case names one device.
      const device = command.deviceId.toLowerCase();
      const round = seen.get(device) ?? 0;
      seen.set(device, round + 1);
      (rounds[round] ??= []).push(index);
    });
    for (const round of rounds) {
      try {
        const outcomes = await commands.createMany(pool, round.map((index) => batch[index] as NewCommand));
        round.forEach((index, position) => (settled[index] = { ok: true, value: outcomes[position] as CreateOutcome }));
      } catch (error) {
        if (round.length === 1) {
          settled[round[0] as number] = { ok: false, error };
          continue;
        }
        const alone = await Promise.allSettled(round.map((index) => commands.create(pool, batch[index] as NewCommand)));
        round.forEach((index, position) => {
          const result = alone[position] as PromiseSettledResult<CreateOutcome>;
          settled[index] = result.status === 'fulfilled' ? { ok: true, value: result.value } : { ok: false, error: result.reason };
        });
      }
    }
    return settled;
  });

  /** The request with its defaults, and its digest; 400 for a reply timeout while replies are off. */
  function resolve(input: CommandInput, field: (name: string) => string): Resolved {
    if (input.response_timeout_s !== undefined && !deps.repliesEnabled) {
      throw new BadRequestError(`${field('response_timeout_s')}: command replies are not enabled (COMMAND_REPLIES)`, 'validation_failed');
    }
    const request = {
      name: input.name,
      params: input.params ?? {},
      ttl_s: input.ttl_s ?? DEFAULT_TTL_S,
      response_timeout_s: deps.repliesEnabled ? (input.response_timeout_s ?? DEFAULT_RESPONSE_TIMEOUT_S) : null,
    };
    return { request, digest: hash('sha256', canonicalJson(request), 'base64url') };
  }

  /**
   * Creates the command (one statement, see the repository's `create`), or
   * finds the one created earlier under the same key. Throws the caller's
   * answer for each reason none was made.
   */
  async function createOne(
    deviceId: string,
    { request, digest }: Resolved,
    options: { source: CommandSource; idempotencyKey: string | null; tenantId: string | null; audit: NewCommand['audit'] },
  ): Promise<Created> {
    const settled = await createInTurn({
      id: randomUUID(),
      tenantId: options.tenantId,
      deviceId,
      name: request.name,
      params: request.params,
      source: options.source,
      idempotencyKey: options.idempotencyKey,
      requestDigest: digest,
      ttlS: request.ttl_s,
      responseTimeoutS: request.response_timeout_s,
      at: new Date(clock()),
      maxUnfinished: deps.maxPendingPerDevice,
      audit: options.audit,
    });
    if (!settled.ok) throw settled.error;
    const outcome = settled.value;
    switch (outcome.kind) {
      case 'created':
        return { command: outcome.command, created: true };
      case 'existing':
        if (outcome.command.request_digest !== digest) {
          throw new ConflictError('the idempotency key was already used for a different command on this device', 'idempotency_key_reused');
        }
        return { command: outcome.command, created: false };
      case 'no_device':
      case 'other_tenant':
        throw new NotFoundError(`device ${deviceId}`);
      case 'disabled':
        throw new ConflictError(`device ${deviceId} is disabled`, 'device_disabled');
      case 'too_many':
        throw new TooManyRequestsError(
          `device ${deviceId} already has ${deps.maxPendingPerDevice} unfinished commands; wait for some to finish`,
          'too_many_pending_commands',
        );
    }
  }

  async function findCommand(db: Queryable, device: DeviceRow, commandId: string): Promise<CommandRow> {
    const row = await commands.findById(db, commandId);
    if (!row || row.device_id !== device.id || row.tenant_id !== device.tenant_id) throw new NotFoundError(`command ${commandId}`);
    return row;
  }

  /** One try: the canceled command, or why not and whether a publish of it is under way. */
  function cancelOnce(actor: Actor, deviceId: string, commandId: string): Promise<{ canceled: TransitionedRow; why?: never; inFlight?: never } | { canceled?: never; why: string; inFlight: boolean }> {
    const now = new Date(clock());
    return withTransaction(pool, async (db) => {
      const device = await findVisibleDevice(devices, db, actor, deviceId);
      const row = await findCommand(db, device, commandId);
      const moved = await commands.cancel(db, row.id, now);
      if (!moved) {
        if (nextState(row.state, 'canceled') === null) return { why: `it is ${row.state}`, inFlight: false };
        const inFlight = await commands.mayCancelSoon(db, row.id);
        return { why: inFlight ? 'it is being sent to EMQX' : 'an earlier attempt to send it got no answer or reached the device, so EMQX may have it', inFlight };
      }
      await audit.record(
        db,
        actor,
        { action: 'command.cancel', objectType: 'command', objectId: moved.id, tenantId: device.tenant_id, details: { device_id: device.id, name: moved.name } },
        now,
      );
      return { canceled: moved };
    });
  }

  return {
    /** POST /v1/devices/{id}/commands: a new queued command, or the one created earlier under the same Idempotency-Key. */
    async create(actor: Actor, deviceId: string, input: CommandInput, idempotencyKey: string | null): Promise<{ command: CommandView; created: boolean }> {
      const resolved = resolve(input, (name) => `body.${name}`);
      const result = await createOne(deviceId, resolved, {
        source: 'api',
        idempotencyKey,
        tenantId: actor.tenantId,
        audit: {
          actor,
          // Never the params: they are the caller's data, not a fact about the change.
          entry: { action: 'command.create', objectType: 'command', details: { device_id: deviceId, name: resolved.request.name } },
        },
      });
      if (result.created) deps.changed([result.command]);
      return { command: toCommandView(result.command), created: result.created };
    },

    /**
     * A request from commands.{tenant} (its command_id, if any, is the
     * idempotency key). Throws CommandRequestRefused for a request that can
     * never become a command; anything else thrown may succeed later — a
     * device with too many unfinished commands among them.
     */
    async createFromRequest(tenantId: string, deviceId: string, input: CommandInput, commandId: string | null): Promise<{ command: CommandRow; created: boolean }> {
      let result: Created;
      try {
        const resolved = resolve(input, (name) => name);
        result = await createOne(deviceId, resolved, { source: 'kafka', idempotencyKey: commandId, tenantId, audit: null });
      } catch (error) {
        if (error instanceof NotFoundError) {
          // Whether the device is another tenant's is told apart for the dead letter's reason.
          const device = await devices.findById(pool, deviceId);
          throw device
            ? new CommandRequestRefused('tenant_mismatch', `device ${deviceId} is not a device of tenant ${tenantId}`)
            : new CommandRequestRefused('unknown_device', `device ${deviceId} does not exist`);
        }
        if (error instanceof BadRequestError) throw new CommandRequestRefused('invalid_request', error.message);
        if (error instanceof ConflictError) {
          throw new CommandRequestRefused(error.code === 'device_disabled' ? 'device_disabled' : 'idempotency_conflict', error.message);
        }
        throw error;
      }
      if (result.created) deps.changed([result.command]);
      return result;
    },

    /**
     * The command once it has finished (acked, or replied to with replies on;
     * or expired, dropped, canceled), or as it is after `ms`.
     */
    async waitFor(command: CommandView, ms: number): Promise<{ command: CommandView; finished: boolean }> {
      const row = await deps.waiters.until(command.id, ms);
      // Gone while waited for: its device was deleted, and the command with it.
      if (!row) throw new NotFoundError(`command ${command.id}`);
      return { command: toCommandView(row), finished: row.finished_at !== null };
    },

    async get(actor: Actor, deviceId: string, commandId: string): Promise<CommandView> {
      const device = await findVisibleDevice(devices, pool, actor, deviceId);
      return toCommandView(await findCommand(pool, device, commandId));
    },

    async list(actor: Actor, deviceId: string, query: { limit: number; cursor?: string; state?: CommandState }): Promise<Page<CommandView>> {
      const after = parseCursor(query.cursor, isCommandId);
      const device = await findVisibleDevice(devices, pool, actor, deviceId);
      const rows = await commands.listByDevice(pool, {
        tenantId: device.tenant_id,
        deviceId: device.id,
        limit: query.limit,
        after,
        ...(query.state !== undefined ? { state: query.state } : {}),
      });
      return toPage(rows, query.limit, (row) => row.id, toCommandView);
    },

    /**
     * Cancels a command that has not been handed to EMQX; 409 once it may
     * have been. While a publish of it is under way, waits (at most
     * cancelWaitMs) for EMQX's answer: a command EMQX did not take is canceled.
     */
    async cancel(actor: Actor, deviceId: string, commandId: string): Promise<CommandView> {
      const waitUntil = clock() + deps.cancelWaitMs;
      for (;;) {
        const outcome = await cancelOnce(actor, deviceId, commandId);
        if (outcome.canceled) {
          deps.changed([outcome.canceled]);
          return toCommandView(outcome.canceled);
        }
        if (!outcome.inFlight || clock() >= waitUntil) {
          throw new ConflictError(`command ${commandId} can no longer be canceled: ${outcome.why}`, 'command_not_cancelable');
        }
        await sleep(CANCEL_POLL_MS);
      }
    },

    /**
     * In the transaction that deletes the devices: what they still had queued
     * is canceled, what EMQX held for them dropped, and their commands go
     * with them. Resolves with what to run after the commit.
     */
    async purgeDevices(db: Queryable, deviceIds: readonly string[]): Promise<() => void> {
      const rows = await commands.purgeDevices(db, deviceIds, new Date(clock()));
      return () => {
        if (rows.length > 0) deps.changed(rows);
      };
    },
  };
}

export type CommandService = ReturnType<typeof createCommandService>;
