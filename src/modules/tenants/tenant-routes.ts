import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { isoTimestamp, pageQuerySchema, pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { TenantService } from './tenant-service.js';

export const tenantSchema = z
  .object({
    id: z.string().meta({ examples: ['acme'] }),
    name: z.string(),
    device_count: z.number().int(),
    created_at: isoTimestamp,
    updated_at: isoTimestamp,
  })
  .meta({ id: 'Tenant' });

const tenantParams = z.object({ tenantId: tenantIdSchema });

const GLOBAL_TOKEN = 'The token is scoped to a tenant; this needs a global one (`forbidden`)';

export const tenantRoutes: FastifyPluginAsync<{ tenants: TenantService }> = async (app, { tenants }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/tenants',
    {
      schema: {
        tags: ['tenants'],
        operationId: 'createTenant',
        summary: 'Create a tenant (and its Kafka topics)',
        description:
          'Creates `telemetry.raw.{id}`, `telemetry.dlq.{id}`, `device.events.{id}`, `commands.{id}`, `commands.status.{id}` and `commands.dlq.{id}` first; if Kafka cannot be reached nothing is created and the answer is 503. Needs a global token.',
        body: z
          .strictObject({
            id: tenantIdSchema.optional().describe('Chosen by the caller, or a generated UUID when left out. Part of every Kafka topic name of the tenant'),
            name: z.string().trim().min(1).max(200),
          })
          .meta({ examples: [{ id: 'acme', name: 'Acme Corp' }] }),
        response: { 201: tenantSchema },
        answers: {
          201: 'Created',
          403: GLOBAL_TOKEN,
          409: 'A tenant with this id exists (`tenant_exists`)',
          503: 'Kafka cannot be reached, so the topics could not be created (`kafka_unavailable`), or Postgres cannot (`unavailable`); nothing was created',
        },
      },
    },
    async (request, reply) => reply.code(201).send(await tenants.create(request.actor, request.body)),
  );

  routes.get(
    '/v1/tenants',
    {
      schema: {
        tags: ['tenants'],
        operationId: 'listTenants',
        summary: 'List tenants (a tenant-scoped token sees its own only)',
        description: 'In creation order.',
        querystring: pageQuerySchema,
        response: { 200: pageSchema(tenantSchema) },
        answers: { 200: 'A page of tenants' },
      },
    },
    async (request) => tenants.list(request.actor, request.query),
  );

  routes.get(
    '/v1/tenants/:tenantId',
    {
      schema: {
        tags: ['tenants'],
        operationId: 'getTenant',
        summary: 'Get a tenant',
        params: tenantParams,
        response: { 200: tenantSchema },
        answers: { 200: 'The tenant', 404: "No such tenant, or not the token's" },
      },
    },
    async (request) => tenants.get(request.actor, request.params.tenantId),
  );

  routes.delete(
    '/v1/tenants/:tenantId',
    {
      schema: {
        tags: ['tenants'],
        operationId: 'deleteTenant',
        summary: 'Delete a tenant',
        description:
          'Refused with 409 while the tenant has devices, unless `force=true`, which deletes them too and ends their MQTT sessions. Its Kafka topics are kept, and the data in them. Needs a global token.',
        params: tenantParams,
        querystring: z.strictObject({
          force: z.enum(['true', 'false']).default('false').describe("`true` deletes the tenant's devices with it"),
        }),
        answers: {
          204: 'Deleted',
          403: GLOBAL_TOKEN,
          404: "No such tenant, or not the token's",
          409: 'The tenant has devices and `force` is not `true` (`tenant_has_devices`)',
        },
      },
    },
    async (request, reply) => {
      await tenants.delete(request.actor, request.params.tenantId, request.query.force === 'true');
      return reply.code(204).send();
    },
  );
};
