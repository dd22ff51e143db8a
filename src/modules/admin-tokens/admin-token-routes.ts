import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { labelSchema, optionalBody, pageQuerySchema, pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { AdminTokenService } from './admin-token-service.js';

const adminTokenSchema = z.object({
  id: z.string(),
  label: z.string().nullable(),
  tenant_id: z.string().nullable(),
  created_at: z.string(),
  revoked_at: z.string().nullable(),
});

export const adminTokenRoutes: FastifyPluginAsync<{ adminTokens: AdminTokenService }> = async (app, { adminTokens }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/admin-tokens',
    {
      schema: {
        body: optionalBody(
          z.strictObject({ label: labelSchema.optional(), tenant_id: tenantIdSchema.nullable().optional() }),
        ),
        // The token is in this answer only.
        response: { 201: adminTokenSchema.extend({ token: z.string() }) },
      },
    },
    async (request, reply) => reply.code(201).send(await adminTokens.create(request.actor, request.body)),
  );

  routes.get(
    '/v1/admin-tokens',
    { schema: { querystring: pageQuerySchema, response: { 200: pageSchema(adminTokenSchema) } } },
    async (request) => adminTokens.list(request.actor, request.query),
  );

  routes.delete(
    '/v1/admin-tokens/:tokenId',
    { schema: { params: z.object({ tokenId: z.string().regex(/^[a-z2-7]{12}$/, 'must be a token id') }) } },
    async (request, reply) => {
      await adminTokens.revoke(request.actor, request.params.tokenId);
      return reply.code(204).send();
    },
  );
};
