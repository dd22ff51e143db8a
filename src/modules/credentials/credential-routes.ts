import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceParams, labelSchema, optionalBody, pageQuerySchema, pageSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { CredentialService } from './credential-service.js';

export const keySchema = z.object({
  id: z.string(),
  display_prefix: z.string(),
  label: z.string().nullable(),
  state: z.enum(['active', 'expiring', 'expired', 'revoked']),
  created_at: z.string(),
  not_after: z.string().nullable(),
  revoked_at: z.string().nullable(),
  last_used_at: z.string().nullable(),
});

/** The only answers that carry a secret: the key, once, when it is issued. */
const issuedKeySchema = keySchema.extend({ key: z.string() });
const rotatedKeySchema = issuedKeySchema.extend({
  expiring_key_ids: z.array(z.string()),
  previous_keys_not_after: z.string(),
});

const MAX_GRACE_S = 30 * 24 * 3600;

export const credentialRoutes: FastifyPluginAsync<{ credentials: CredentialService }> = async (app, { credentials }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.get(
    '/v1/devices/:deviceId/keys',
    { schema: { params: deviceParams, querystring: pageQuerySchema, response: { 200: pageSchema(keySchema) } } },
    async (request) => credentials.listKeys(request.actor, request.params.deviceId, request.query),
  );

  routes.post(
    '/v1/devices/:deviceId/keys',
    {
      schema: {
        params: deviceParams,
        body: optionalBody(
          z.strictObject({ label: labelSchema.optional(), not_after: z.iso.datetime({ offset: true }).optional() }),
        ),
        response: { 201: issuedKeySchema },
      },
    },
    async (request, reply) => reply.code(201).send(await credentials.issueKey(request.actor, request.params.deviceId, request.body)),
  );

  routes.post(
    '/v1/devices/:deviceId/keys/rotate',
    {
      schema: {
        params: deviceParams,
        body: z.strictObject({
          grace_period_s: z.number().int().min(0).max(MAX_GRACE_S),
          label: labelSchema.optional(),
        }),
        response: { 201: rotatedKeySchema },
      },
    },
    async (request, reply) => reply.code(201).send(await credentials.rotateKeys(request.actor, request.params.deviceId, request.body)),
  );

  routes.delete(
    '/v1/devices/:deviceId/keys/:keyId',
    { schema: { params: deviceParams.extend({ keyId: z.string().regex(/^[a-z2-7]{12}$/, 'must be a key id') }) } },
    async (request, reply) => {
      await credentials.revokeKey(request.actor, request.params.deviceId, request.params.keyId);
      return reply.code(204).send();
    },
  );

  routes.put(
    '/v1/devices/:deviceId/psk',
    {
      schema: {
        params: deviceParams,
        body: z.strictObject({ psk: z.string().min(16, 'must be at least 16 characters').max(256) }),
      },
    },
    async (request, reply) => {
      await credentials.setPsk(request.actor, request.params.deviceId, request.body.psk);
      return reply.code(204).send();
    },
  );

  routes.delete('/v1/devices/:deviceId/psk', { schema: { params: deviceParams } }, async (request, reply) => {
    await credentials.deletePsk(request.actor, request.params.deviceId);
    return reply.code(204).send();
  });
};
