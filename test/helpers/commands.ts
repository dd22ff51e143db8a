import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Queryable } from '../../src/infra/transaction.js';
import { createTopicNames } from '../../src/lib/topics.js';
import type { NewCommand } from '../../src/modules/commands/command-repository.js';
import type { CommandStatusRecord } from '../../src/modules/commands/command-status-outbox.js';
import type { AdminClient } from './admin.js';
import type { ServiceTransport } from '../../dev/emqx-sim/emqx-sim.js';
import { injectTransport } from './emqx.js';
import { TEST_ADMIN_TOKEN } from './env.js';
import { consumeRecords } from './kafka.js';

export interface CommandBody {
  id: string;
  device_id: string;
  tenant_id: string;
  name: string;
  params: Record<string, unknown>;
  state: string;
  reason: string | null;
  attempts: number;
  last_error: string | null;
  emqx_message_id: string | null;
  expires_at: string;
  created_at: string;
  reply: { status: string; result: unknown; replied_at: string } | null;
  [field: string]: unknown;
}

/** A command as the repository creates it: for `deviceId`, with no idempotency key, no reply expected and no audit row, unless `fields` say otherwise. */
export function newCommand(deviceId: string, fields: Partial<NewCommand> = {}): NewCommand {
  return {
    id: randomUUID(),
    tenantId: null,
    deviceId,
    name: 'n',
    params: {},
    source: 'api',
    idempotencyKey: null,
    requestDigest: 'x',
    ttlS: 3600,
    responseTimeoutS: null,
    at: new Date(),
    maxUnfinished: 1000,
    audit: null,
    ...fields,
  };
}

/** Where EMQX's HTTP action sends to: this app's /emqx/events (one app, or any of several in turn). */
export function eventsTo(...apps: FastifyInstance[]): ServiceTransport {
  return injectTransport(...apps);
}

/** POST /v1/devices/{id}/commands, with an Idempotency-Key when given. */
export function createCommand(app: FastifyInstance, deviceId: string, body: object, options: { idempotencyKey?: string; token?: string } = {}) {
  return app.inject({
    method: 'POST',
    url: `/v1/devices/${deviceId}/commands`,
    headers: {
      authorization: `Bearer ${options.token ?? TEST_ADMIN_TOKEN}`,
      ...(options.idempotencyKey !== undefined ? { 'idempotency-key': options.idempotencyKey } : {}),
    },
    payload: body,
  });
}

/** Polls the command until it is in `state`; returns it. */
export async function waitForCommand(admin: AdminClient, deviceId: string, commandId: string, state: string | ((command: CommandBody) => boolean), timeoutMs = 10_000): Promise<CommandBody> {
  const deadline = Date.now() + timeoutMs;
  let last: CommandBody | undefined;
  for (;;) {
    const response = await admin.get(`/v1/devices/${deviceId}/commands/${commandId}`);
    assert.equal(response.statusCode, 200, response.body);
    last = response.json<CommandBody>();
    if (typeof state === 'string' ? last.state === state : state(last)) return last;
    if (Date.now() > deadline) assert.fail(`command ${commandId} is ${last.state} (${last.reason ?? '-'}, ${last.last_error ?? '-'}), not ${String(state)}, after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Waits until every status record this app's database holds is on Kafka. */
export async function outboxDrained(app: FastifyInstance, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!/^devicelink_commands_status_outbox_depth 0$/m.test((await app.inject({ method: 'GET', url: '/metrics' })).body)) {
    if (Date.now() > deadline) assert.fail(`status records still waiting after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Status records of a tenant read back from commands.status.{tenant}. */
export async function statusRecords(topicPrefix: string, tenantId: string, count: number, options: { settleMs?: number; timeoutMs?: number } = {}) {
  const topic = createTopicNames(topicPrefix).commandStatus(tenantId);
  const records = await consumeRecords([topic], count, { settleMs: options.settleMs ?? 1000, timeoutMs: options.timeoutMs ?? 20_000 });
  return records.map((record) => ({ key: record.key, partition: record.partition, ...(JSON.parse(record.value ?? '{}') as CommandStatusRecord) }));
}

/** The states each command went through, in the order its records were read. */
export function statesByCommand(records: readonly { command_id: string; state: string }[]): Map<string, string[]> {
  const byCommand = new Map<string, string[]>();
  for (const record of records) {
    const states = byCommand.get(record.command_id) ?? [];
    states.push(record.state);
    byCommand.set(record.command_id, states);
  }
  return byCommand;
}

/** The order states are reached in; a command's status records follow it, possibly skipping some. */
const STATE_ORDER = ['queued', 'sent', 'delivered', 'acked', 'expired', 'dropped', 'canceled', 'succeeded', 'failed', 'timed_out'];
const FINAL = new Set(['expired', 'dropped', 'canceled', 'succeeded', 'failed', 'timed_out']);

/**
 * Whether `states` is a path a command can take: queued first, each state
 * once, only forward, at most one final state and only at the end, ending in `last`.
 */
export function isForwardPath(states: readonly string[], last: string): boolean {
  if (states[0] !== 'queued' || states.at(-1) !== last) return false;
  for (let i = 1; i < states.length; i++) {
    const previous = states[i - 1] as string;
    const current = states[i] as string;
    if (FINAL.has(previous)) return false;
    if (!FINAL.has(current) && STATE_ORDER.indexOf(current) <= STATE_ORDER.indexOf(previous)) return false;
  }
  return true;
}

/**
 * Inserts `perDevice` queued commands for each of `devices` new device ids of
 * `tenantId`, straight into the table (each one due now, as before migration
 * 0009 made only heads due); the queue-head triggers put the heads right.
 */
export async function seedQueuedCommands(db: Queryable, tenantId: string, devices: number, perDevice: number): Promise<void> {
  await db.query(
    `INSERT INTO commands (id, tenant_id, device_id, name, state, source, request_digest, ttl_s, send_after, created_at, updated_at, expires_at)
     SELECT gen_random_uuid(), $1, d.id, 'job-' || n, 'queued', 'api', 'x', 3600, now(), now(), now(), now() + interval '1 hour'
       FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $2)) d, generate_series(1, $3) n
      ORDER BY d.id, n`,
    [tenantId, devices, perDevice],
  );
}
