import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceParams, isoTimestamp as iso, optionalBody, pageQuerySchema, pageSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import { commandRequestFields, commandStateSchema, idempotencyKeySchema } from './command-schemas.js';
import type { CommandService } from './command-service.js';

export const commandSchema = z
  .object({
    id: z.string().meta({ format: 'uuid' }).describe('The `command_id` the device receives'),
    device_id: z.string().meta({ format: 'uuid' }),
    tenant_id: z.string(),
    name: z.string().meta({ examples: ['reboot'] }),
    params: z.record(z.string(), z.unknown()),
    state: commandStateSchema,
    reason: z
      .string()
      .nullable()
      .describe(
        'Why it is in its state: `expired` not_sent, not_delivered, not_acked or expired_in_emqx; `dropped` refused_by_emqx, device_deleted or the reason EMQX gave (queue_full); `timed_out` no_reply; `canceled` canceled or device_deleted',
      ),
    source: z.enum(['api', 'kafka', 'job']).describe('`job`: made by the command job `job_id`'),
    idempotency_key: z.string().nullable().describe('The `Idempotency-Key`, or the `command_id` of a Kafka request'),
    ttl_s: z.number().int(),
    response_timeout_s: z.number().int().nullable().describe('Null when no reply is expected (replies were off when it was created)'),
    created_at: iso,
    updated_at: iso,
    expires_at: iso,
    sent_at: iso.nullable().describe('When EMQX answered 200 to its publish'),
    delivered_at: iso.nullable(),
    acked_at: iso.nullable(),
    finished_at: iso.nullable(),
    attempts: z.number().int().describe('Publishes tried'),
    last_error: z
      .string()
      .nullable()
      .describe('What the last publish got when it did not hand the command over: `no_subscriber` (EMQX answered 202), `status_<code>`, `no_answer`, `unreachable`')
      .meta({ examples: ['no_subscriber'] }),
    emqx_message_id: z.string().nullable().describe("The message id of EMQX's 200 answer"),
    reply: z
      .object({
        status: z.enum(['ok', 'error']),
        result: z.unknown().describe('What the device put in its reply'),
        replied_at: iso,
      })
      .nullable()
      .describe("The device's reply, with `COMMAND_REPLIES=enabled`"),
    job_id: z.string().meta({ format: 'uuid' }).nullable().describe('The command job that made it, or null'),
  })
  .meta({ id: 'Command' });

const uuidPattern = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

const commandParams = deviceParams.extend({
  commandId: z
    .string()
    .regex(uuidPattern, 'must be a UUID')
    .transform((value) => value.toLowerCase())
    .describe("The command's id"),
});

const NOT_FOUND = "No such device, or not in the token's tenant";
/** The longest a create may wait for its command (`?wait=`). */
const MAX_WAIT_S = 300;

export const commandRoutes: FastifyPluginAsync<{ commands: CommandService }> = async (app, { commands }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/devices/:deviceId/commands',
    {
      schema: {
        tags: ['commands'],
        operationId: 'createCommand',
        summary: 'Send a command to the device (202 with the queued command)',
        description:
          'The command is stored and sent to the device through EMQX (`devices/{deviceId}/commands`, QoS 1, message expiry = the remaining TTL) as JSON `{"command_id","name","params","expires_at"}`. A device\'s commands go out one at a time in creation order. Follow its `state` here or on Kafka `commands.status.{tenant}`. A retried create with the same `Idempotency-Key` returns the same command; the same key with a different body is 409. A device has at most `COMMANDS_MAX_PENDING_PER_DEVICE` unfinished commands (429 beyond).',
        params: deviceParams,
        headers: z.looseObject({
          'idempotency-key': idempotencyKeySchema
            .optional()
            .describe('Makes a retried create return the command the first one made (kept per device for as long as the command is)'),
        }),
        querystring: z.object({
          wait: z.coerce
            .number()
            .int()
            .min(1)
            .max(MAX_WAIT_S)
            .optional()
            .describe(
              'Seconds to wait for the command to finish before answering: for its reply (with `COMMAND_REPLIES=enabled`) or its ack, or its end otherwise (expired, dropped, canceled). No transaction or connection is held meanwhile.',
            ),
        }),
        body: z.strictObject(commandRequestFields).meta({ examples: [{ name: 'reboot', params: { delay_s: 5 }, ttl_s: 600 }] }),
        response: { 200: commandSchema, 202: commandSchema },
        answers: {
          200: 'With `wait`: the command, finished within the wait (`reply` holds what the device answered)',
          202: 'The command: queued, or the one an earlier create with the same `Idempotency-Key` made; with `wait`, as it is when the wait ran out',
          404: NOT_FOUND,
          409: 'The `Idempotency-Key` was used for a different command (`idempotency_key_reused`), or the device is disabled (`device_disabled`)',
          429: 'The device already has `COMMANDS_MAX_PENDING_PER_DEVICE` unfinished commands (`too_many_pending_commands`)',
        },
      },
    },
    async (request, reply) => {
      const { command } = await commands.create(request.actor, request.params.deviceId, request.body, request.headers['idempotency-key'] ?? null);
      if (request.query.wait === undefined) return reply.code(202).send(command);
      const waited = await commands.waitFor(command, request.query.wait * 1000);
      return reply.code(waited.finished ? 200 : 202).send(waited.command);
    },
  );

  routes.get(
    '/v1/devices/:deviceId/commands',
    {
      schema: {
        tags: ['commands'],
        operationId: 'listCommands',
        summary: "List the device's commands",
        description: 'In creation order.',
        params: deviceParams,
        querystring: pageQuerySchema.extend({ state: commandStateSchema.optional().describe('Only the commands in this state') }),
        response: { 200: pageSchema(commandSchema) },
        answers: { 200: 'A page of commands', 404: NOT_FOUND },
      },
    },
    async (request) => commands.list(request.actor, request.params.deviceId, request.query),
  );

  routes.get(
    '/v1/devices/:deviceId/commands/:commandId',
    {
      schema: {
        tags: ['commands'],
        operationId: 'getCommand',
        summary: 'Get a command',
        params: commandParams,
        response: { 200: commandSchema },
        answers: { 200: 'The command', 404: `${NOT_FOUND}, or no such command of it` },
      },
    },
    async (request) => commands.get(request.actor, request.params.deviceId, request.params.commandId),
  );

  routes.post(
    '/v1/devices/:deviceId/commands/:commandId/cancel',
    {
      schema: {
        tags: ['commands'],
        operationId: 'cancelCommand',
        summary: 'Cancel a command not yet handed to EMQX',
        description:
          'Only a queued command that no publish may have reached EMQX with: not while a publish of it is under way, and not after an attempt that got no answer (EMQX may hold it).',
        params: commandParams,
        body: optionalBody(z.strictObject({})),
        response: { 200: commandSchema },
        answers: {
          200: 'The canceled command',
          404: `${NOT_FOUND}, or no such command of it`,
          409: 'It can no longer be canceled (`command_not_cancelable`)',
        },
      },
    },
    async (request) => commands.cancel(request.actor, request.params.deviceId, request.params.commandId),
  );
};
