import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceIdSchema, deviceParams, optionalBody, pageQuerySchema, pageSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import { commandRequestFields, commandStateSchema, idempotencyKeySchema } from './command-schemas.js';
import type { CommandService } from './command-service.js';

const iso = z.string();

export const commandSchema = z.object({
  id: z.string(),
  device_id: z.string(),
  tenant_id: z.string(),
  name: z.string(),
  params: z.record(z.string(), z.unknown()),
  state: commandStateSchema,
  reason: z.string().nullable(),
  source: z.enum(['api', 'kafka']),
  idempotency_key: z.string().nullable(),
  ttl_s: z.number().int(),
  response_timeout_s: z.number().int().nullable(),
  created_at: iso,
  updated_at: iso,
  expires_at: iso,
  sent_at: iso.nullable(),
  delivered_at: iso.nullable(),
  acked_at: iso.nullable(),
  finished_at: iso.nullable(),
  attempts: z.number().int(),
  last_error: z.string().nullable(),
  emqx_message_id: z.string().nullable(),
  reply: z.object({ status: z.enum(['ok', 'error']), result: z.unknown(), replied_at: iso }).nullable(),
});

const commandParams = z.object({
  deviceId: deviceIdSchema,
  commandId: z
    .string()
    .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID')
    .transform((value) => value.toLowerCase()),
});

export const commandRoutes: FastifyPluginAsync<{ commands: CommandService }> = async (app, { commands }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/devices/:deviceId/commands',
    {
      schema: {
        params: deviceParams,
        headers: z.looseObject({ 'idempotency-key': idempotencyKeySchema.optional() }),
        body: z.strictObject(commandRequestFields),
        response: { 202: commandSchema },
      },
    },
    async (request, reply) => {
      const { command } = await commands.create(request.actor, request.params.deviceId, request.body, request.headers['idempotency-key'] ?? null);
      return reply.code(202).send(command);
    },
  );

  routes.get(
    '/v1/devices/:deviceId/commands',
    {
      schema: {
        params: deviceParams,
        querystring: pageQuerySchema.extend({ state: commandStateSchema.optional() }),
        response: { 200: pageSchema(commandSchema) },
      },
    },
    async (request) => commands.list(request.actor, request.params.deviceId, request.query),
  );

  routes.get(
    '/v1/devices/:deviceId/commands/:commandId',
    { schema: { params: commandParams, response: { 200: commandSchema } } },
    async (request) => commands.get(request.actor, request.params.deviceId, request.params.commandId),
  );

  routes.post(
    '/v1/devices/:deviceId/commands/:commandId/cancel',
    { schema: { params: commandParams, body: optionalBody(z.strictObject({})), response: { 200: commandSchema } } },
    async (request) => commands.cancel(request.actor, request.params.deviceId, request.params.commandId),
  );
};
