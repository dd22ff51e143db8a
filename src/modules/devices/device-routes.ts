import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceIdSchema, deviceParams, pageQuerySchema, pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import { decoderConfigSchema } from '../../lib/decoder-config.js';
import type { DeviceService } from './device-service.js';

const nameSchema = z.string().trim().min(1).max(200);
const thresholdSchema = z.number().int().min(10).max(86_400);

export const deviceSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  name: z.string(),
  disabled: z.boolean(),
  offline_threshold_s: z.number().int(),
  decoder: z.unknown().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  online: z.boolean(),
  last_seen_at: z.string().nullable(),
});

export const deviceRoutes: FastifyPluginAsync<{ devices: DeviceService }> = async (app, { devices }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/tenants/:tenantId/devices',
    {
      schema: {
        params: z.object({ tenantId: tenantIdSchema }),
        body: z.strictObject({
          id: deviceIdSchema.optional(),
          name: nameSchema,
          disabled: z.boolean().optional(),
          offline_threshold_s: thresholdSchema.optional(),
          decoder: decoderConfigSchema.nullable().optional(),
        }),
        response: { 201: deviceSchema },
      },
    },
    async (request, reply) => reply.code(201).send(await devices.create(request.actor, request.params.tenantId, request.body)),
  );

  routes.get(
    '/v1/tenants/:tenantId/devices',
    {
      schema: {
        params: z.object({ tenantId: tenantIdSchema }),
        querystring: pageQuerySchema.extend({ status: z.enum(['online', 'offline']).optional() }),
        response: { 200: pageSchema(deviceSchema) },
      },
    },
    async (request) => devices.list(request.actor, request.params.tenantId, request.query),
  );

  routes.get(
    '/v1/devices/:deviceId',
    { schema: { params: deviceParams, response: { 200: deviceSchema } } },
    async (request) => devices.get(request.actor, request.params.deviceId),
  );

  routes.patch(
    '/v1/devices/:deviceId',
    {
      schema: {
        params: deviceParams,
        body: z
          .strictObject({
            name: nameSchema.optional(),
            disabled: z.boolean().optional(),
            offline_threshold_s: thresholdSchema.optional(),
            decoder: decoderConfigSchema.nullable().optional(),
          })
          .refine((patch) => Object.keys(patch).length > 0, 'must name at least one field to change'),
        response: { 200: deviceSchema },
      },
    },
    async (request) => devices.update(request.actor, request.params.deviceId, request.body),
  );

  routes.delete('/v1/devices/:deviceId', { schema: { params: deviceParams } }, async (request, reply) => {
    await devices.delete(request.actor, request.params.deviceId);
    return reply.code(204).send();
  });
};
