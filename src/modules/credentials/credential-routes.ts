import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceParams, isoTimestamp, labelSchema, optionalBody, pageQuerySchema, pageSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { CredentialService } from './credential-service.js';

const keyFields = {
  id: z.string().describe('The public key id, also inside the key').meta({ examples: ['moz3plr7sd4b'] }),
  display_prefix: z.string().describe('Enough of the key to tell it apart').meta({ examples: ['sk_live_moz3plr7sd4b_…'] }),
  label: z.string().nullable(),
  state: z
    .enum(['active', 'expiring', 'expired', 'revoked'])
    .describe('`expiring`: usable until `not_after`; `expired`: past it; `revoked`: never usable again'),
  created_at: isoTimestamp,
  not_after: isoTimestamp.nullable().describe('The end of its use, when it has one (given at issue, or by a rotation)'),
  revoked_at: isoTimestamp.nullable(),
  last_used_at: isoTimestamp.nullable().describe('The last CONNECT it authenticated, written every few seconds'),
};

export const keySchema = z.object(keyFields).meta({ id: 'Key', description: 'A device API key, never its secret.' });

/** The only answers that carry a secret: the key, once, when it is issued. */
const keyField = z
  .string()
  .describe('The MQTT password. Shown once: it is stored only as a keyed digest')
  .meta({ examples: ['sk_live_moz3plr7sd4b_QLWSYO7gu23bMzpszg9HTgtj6AzlLrWcs7XCbW7qUkY'] });
const issuedKeySchema = z.object({ ...keyFields, key: keyField }).meta({ id: 'IssuedKey', description: 'A key just issued, with its secret.' });
const rotatedKeySchema = z
  .object({
    ...keyFields,
    key: keyField,
    expiring_key_ids: z.array(z.string()).describe("The device's other keys, which now expire at `previous_keys_not_after`"),
    previous_keys_not_after: isoTimestamp,
  })
  .meta({ id: 'RotatedKeys', description: 'The new key, with its secret, and the keys it replaces.' });

const MAX_GRACE_S = 30 * 24 * 3600;
const DEVICE_NOT_FOUND = "No such device, or not in the token's tenant";
const TOO_MANY_KEYS = 'The device would hold more than 10 usable keys (`too_many_keys`); keys in a grace period count until it ends';

export const credentialRoutes: FastifyPluginAsync<{ credentials: CredentialService }> = async (app, { credentials }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.get(
    '/v1/devices/:deviceId/keys',
    {
      schema: {
        tags: ['credentials'],
        operationId: 'listKeys',
        summary: "List a device's API keys (never their secrets)",
        description: 'In creation order.',
        params: deviceParams,
        querystring: pageQuerySchema,
        response: { 200: pageSchema(keySchema) },
        answers: { 200: 'A page of keys', 404: DEVICE_NOT_FOUND },
      },
    },
    async (request) => credentials.listKeys(request.actor, request.params.deviceId, request.query),
  );

  routes.post(
    '/v1/devices/:deviceId/keys',
    {
      schema: {
        tags: ['credentials'],
        operationId: 'issueKey',
        summary: 'Issue an API key (the key is in this answer only)',
        description: 'A device holds at most 10 usable keys.',
        params: deviceParams,
        body: optionalBody(
          z
            .strictObject({
              label: labelSchema.optional(),
              not_after: z.iso.datetime({ offset: true }).optional().describe('When the key stops working; in the future. A session it opened ends then'),
            })
            .meta({ examples: [{ label: 'factory provisioning' }] }),
        ),
        response: { 201: issuedKeySchema },
        answers: { 201: 'Issued', 404: DEVICE_NOT_FOUND, 409: TOO_MANY_KEYS },
      },
    },
    async (request, reply) => reply.code(201).send(await credentials.issueKey(request.actor, request.params.deviceId, request.body)),
  );

  routes.post(
    '/v1/devices/:deviceId/keys/rotate',
    {
      schema: {
        tags: ['credentials'],
        operationId: 'rotateKeys',
        summary: "Issue a new key; the device's other usable keys expire after the grace period",
        description:
          'Sessions opened with an expiring key after the rotation are told when it expires (`expire_at`); older ones are ended when it does, unless the device reconnected with another credential meanwhile.',
        params: deviceParams,
        body: z
          .strictObject({
            grace_period_s: z.number().int().min(0).max(MAX_GRACE_S).describe('How long the other keys keep working, in seconds (at most 30 days)'),
            label: labelSchema.optional(),
          })
          .meta({ examples: [{ grace_period_s: 86400, label: '2026-Q4' }] }),
        response: { 201: rotatedKeySchema },
        answers: { 201: 'The new key (shown once) and the keys that now expire', 404: DEVICE_NOT_FOUND, 409: TOO_MANY_KEYS },
      },
    },
    async (request, reply) => reply.code(201).send(await credentials.rotateKeys(request.actor, request.params.deviceId, request.body)),
  );

  routes.delete(
    '/v1/devices/:deviceId/keys/:keyId',
    {
      schema: {
        tags: ['credentials'],
        operationId: 'revokeKey',
        summary: "Revoke a key now (and end the device's live session)",
        description: 'Revoking a revoked key answers 204 again.',
        params: deviceParams.extend({ keyId: z.string().regex(/^[a-z2-7]{12}$/, 'must be a key id').describe("The key's id") }),
        answers: { 204: 'Revoked', 404: `${DEVICE_NOT_FOUND}, or no such key of it` },
      },
    },
    async (request, reply) => {
      await credentials.revokeKey(request.actor, request.params.deviceId, request.params.keyId);
      return reply.code(204).send();
    },
  );

  routes.put(
    '/v1/devices/:deviceId/psk',
    {
      schema: {
        tags: ['credentials'],
        operationId: 'setPsk',
        summary: "Set or replace the device's PSK (stored as an argon2id hash)",
        description:
          'A replaced PSK ends the sessions opened with the old one. Use API keys for large fleets: a PSK costs an argon2id verification whenever a device connects without a cached verification.',
        params: deviceParams,
        body: z.strictObject({ psk: z.string().min(16, 'must be at least 16 characters').max(256).meta({ writeOnly: true }) }),
        answers: { 204: 'Set', 404: DEVICE_NOT_FOUND },
      },
    },
    async (request, reply) => {
      await credentials.setPsk(request.actor, request.params.deviceId, request.body.psk);
      return reply.code(204).send();
    },
  );

  routes.delete(
    '/v1/devices/:deviceId/psk',
    {
      schema: {
        tags: ['credentials'],
        operationId: 'deletePsk',
        summary: "Delete the device's PSK (and end its live session)",
        params: deviceParams,
        answers: { 204: 'Deleted', 404: `${DEVICE_NOT_FOUND}, or it has no PSK` },
      },
    },
    async (request, reply) => {
      await credentials.deletePsk(request.actor, request.params.deviceId);
      return reply.code(204).send();
    },
  );
};
