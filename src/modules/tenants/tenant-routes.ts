import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { pageQuerySchema, pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { TenantService } from './tenant-service.js';

export const tenantSchema = z.object({
  id: z.string(),
  name: z.string(),
  device_count: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
});

const tenantParams = z.object({ tenantId: tenantIdSchema });

export const tenantRoutes: FastifyPluginAsync<{ tenants: TenantService }> = async (app, { tenants }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/tenants',
    {
      schema: {
        body: z.strictObject({ id: tenantIdSchema.optional(), name: z.string().trim().min(1).max(200) }),
        response: { 201: tenantSchema },
      },
    },
    async (request, reply) => reply.code(201).send(await tenants.create(request.actor, request.body)),
  );

  routes.get(
    '/v1/tenants',
    { schema: { querystring: pageQuerySchema, response: { 200: pageSchema(tenantSchema) } } },
    async (request) => tenants.list(request.actor, request.query),
  );

  routes.get(
    '/v1/tenants/:tenantId',
    { schema: { params: tenantParams, response: { 200: tenantSchema } } },
    async (request) => tenants.get(request.actor, request.params.tenantId),
  );

  routes.delete(
    '/v1/tenants/:tenantId',
    {
      schema: {
        params: tenantParams,
        querystring: z.strictObject({ force: z.enum(['true', 'false']).default('false') }),
      },
    },
    async (request, reply) => {
      await tenants.delete(request.actor, request.params.tenantId, request.query.force === 'true');
      return reply.code(204).send();
    },
  );
};
