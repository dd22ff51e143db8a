import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { isoTimestamp, labelSchema, optionalBody, pageQuerySchema, pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { AdminTokenService } from './admin-token-service.js';

const adminTokenFields = {
  id: z.string().meta({ examples: ['abcdefghijkl'] }),
  label: z.string().nullable(),
  tenant_id: z.string().nullable().describe('The one tenant the token sees; null for a global token'),
  created_at: isoTimestamp,
  revoked_at: isoTimestamp.nullable(),
};

const adminTokenSchema = z.object(adminTokenFields).meta({ id: 'AdminToken', description: 'An admin token, never its secret.' });

const GLOBAL_TOKEN = 'The token is scoped to a tenant; this needs a global one (`forbidden`)';

export const adminTokenRoutes: FastifyPluginAsync<{ adminTokens: AdminTokenService }> = async (app, { adminTokens }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/admin-tokens',
    {
      schema: {
        tags: ['admin'],
        operationId: 'createAdminToken',
        summary: 'Create an admin token, global or scoped to one tenant (the token is in this answer only)',
        description: 'Only its SHA-256 digest is stored. Needs a global token.',
        body: optionalBody(
          z
            .strictObject({
              label: labelSchema.optional(),
              tenant_id: tenantIdSchema.nullable().optional().describe('Scopes the token to this tenant; a global token when left out or null'),
            })
            .meta({ examples: [{ label: 'acme operations', tenant_id: 'acme' }] }),
        ),
        // The token is in this answer only.
        response: {
          201: z
            .object({
              ...adminTokenFields,
              token: z.string().describe('The bearer token. Shown once').meta({ examples: ['dlm_at_abcdefghijkl_…'] }),
            })
            .meta({ id: 'CreatedAdminToken', description: 'An admin token just created, with its secret.' }),
        },
        answers: { 201: 'Created', 403: GLOBAL_TOKEN, 404: 'No such tenant' },
      },
    },
    async (request, reply) => reply.code(201).send(await adminTokens.create(request.actor, request.body)),
  );

  routes.get(
    '/v1/admin-tokens',
    {
      schema: {
        tags: ['admin'],
        operationId: 'listAdminTokens',
        summary: 'List admin tokens (never their secrets)',
        description: 'In creation order; revoked ones too. Needs a global token.',
        querystring: pageQuerySchema,
        response: { 200: pageSchema(adminTokenSchema) },
        answers: { 200: 'A page of tokens', 403: GLOBAL_TOKEN },
      },
    },
    async (request) => adminTokens.list(request.actor, request.query),
  );

  routes.delete(
    '/v1/admin-tokens/:tokenId',
    {
      schema: {
        tags: ['admin'],
        operationId: 'revokeAdminToken',
        summary: 'Revoke an admin token',
        description: 'Needs a global token.',
        params: z.object({ tokenId: z.string().regex(/^[a-z2-7]{12}$/, 'must be a token id').describe("The token's id") }),
        answers: { 204: 'Revoked', 403: GLOBAL_TOKEN, 404: 'No such token' },
      },
    },
    async (request, reply) => {
      await adminTokens.revoke(request.actor, request.params.tokenId);
      return reply.code(204).send();
    },
  );
};
