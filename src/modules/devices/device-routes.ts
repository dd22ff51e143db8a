import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceIdSchema, deviceParams, isoTimestamp, pageQuerySchema, pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import { decoderConfigSchema } from '../../lib/decoder-config.js';
import { deviceLabelsSchema, labelSelectorSchema } from '../../lib/device-labels.js';
import { MAX_IMPORTED_DEVICES, type DeviceImportService } from './device-import-service.js';
import type { DeviceService } from './device-service.js';

const nameSchema = z.string().trim().min(1).max(200);
const thresholdSchema = z
  .number()
  .int()
  .min(10)
  .max(86_400)
  .describe('Seconds without telemetry after which the device is offline');

export const deviceSchema = z
  .object({
    id: z.string().meta({ format: 'uuid' }),
    tenant_id: z.string(),
    name: z.string(),
    disabled: z.boolean().describe('A disabled device cannot connect'),
    offline_threshold_s: z.number().int().describe('Seconds without telemetry after which the device is offline'),
    decoder: z.unknown().describe('The payload decoder as set (see `Decoder`), or null for the defaults'),
    labels: z.record(z.string(), z.string()).describe('Its labels: key → value'),
    created_at: isoTimestamp,
    updated_at: isoTimestamp,
    online: z.boolean().describe('The last known status as stored (`GET /v1/devices/{deviceId}/status` has the live one)'),
    last_seen_at: isoTimestamp.nullable().describe('The last telemetry as stored, written in batches: up to about 10 s behind'),
  })
  .meta({ id: 'Device' });

const tenantParams = z.object({ tenantId: tenantIdSchema });
const DEVICE_NOT_FOUND = "No such device, or not in the token's tenant";

/**
 * An import of 10,000 devices with names and a few labels is about 2 MB of
 * JSON; Fastify's default limit is 1 MiB.
 */
const IMPORT_BODY_LIMIT = 16 * 1024 * 1024;

export const deviceRoutes: FastifyPluginAsync<{ devices: DeviceService; imports: DeviceImportService }> = async (app, { devices, imports }) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.post(
    '/v1/tenants/:tenantId/devices',
    {
      schema: {
        tags: ['devices'],
        operationId: 'createDevice',
        summary: 'Register a device',
        description:
          'The device id is its MQTT client id and username; its keys or PSK are its password (`POST /v1/devices/{deviceId}/keys`, `PUT /v1/devices/{deviceId}/psk`).',
        params: tenantParams,
        body: z
          .strictObject({
            id: deviceIdSchema
              .optional()
              .describe(
                'Generated when left out; stored in lowercase. Device ids are unique across tenants: a taken id is 409 `device_exists` for a global token, and `device_id_unavailable` for a tenant-scoped one, whichever tenant holds it',
              ),
            name: nameSchema,
            disabled: z.boolean().optional().meta({ default: false }),
            offline_threshold_s: thresholdSchema.optional().meta({ default: 120 }),
            decoder: decoderConfigSchema.nullable().optional(),
            labels: deviceLabelsSchema.optional(),
          })
          .meta({
            examples: [{ id: 'd7b1c0e2-3f44-4a91-9b2e-2c5a1f0e9d33', name: 'Boiler 7', offline_threshold_s: 300, labels: { site: 'berlin', model: 'tx-40' } }],
          }),
        response: { 201: deviceSchema },
        answers: {
          201: 'Created',
          404: "No such tenant, or not the token's",
          409: 'The id is taken (`device_exists`, or `device_id_unavailable` for a tenant-scoped token)',
        },
      },
    },
    async (request, reply) => reply.code(201).send(await devices.create(request.actor, request.params.tenantId, request.body)),
  );

  routes.get(
    '/v1/tenants/:tenantId/devices',
    {
      schema: {
        tags: ['devices'],
        operationId: 'listDevices',
        summary: "List a tenant's devices",
        description: 'In creation order.',
        params: tenantParams,
        querystring: pageQuerySchema.extend({
          status: z
            .enum(['online', 'offline'])
            .optional()
            .describe('Only the devices whose last known status (as stored, on every online/offline transition) is this'),
          label: labelSelectorSchema
            .optional()
            .describe('`key=value`: only the devices carrying this label. Repeat it to ask for several labels; a device must carry all of them')
            .meta({ examples: ['site=berlin'] }),
        }),
        response: { 200: pageSchema(deviceSchema) },
        answers: { 200: 'A page of devices', 404: "No such tenant, or not the token's" },
      },
    },
    async (request) => devices.list(request.actor, request.params.tenantId, request.query),
  );

  routes.get(
    '/v1/devices/:deviceId',
    {
      schema: {
        tags: ['devices'],
        operationId: 'getDevice',
        summary: 'Get a device',
        params: deviceParams,
        response: { 200: deviceSchema },
        answers: { 200: 'The device', 404: DEVICE_NOT_FOUND },
      },
    },
    async (request) => devices.get(request.actor, request.params.deviceId),
  );

  routes.patch(
    '/v1/devices/:deviceId',
    {
      schema: {
        tags: ['devices'],
        operationId: 'updateDevice',
        summary: 'Change a device',
        description:
          "Disabling refuses new connections and ends the device's live MQTT session. A change to the threshold moves the device's offline deadline at once. Every change is recorded, and every replica reads the device again (within about a second) before it trusts a verification it cached.",
        params: deviceParams,
        body: z
          .strictObject({
            name: nameSchema.optional(),
            disabled: z.boolean().optional(),
            offline_threshold_s: thresholdSchema.optional(),
            decoder: decoderConfigSchema.nullable().optional(),
            labels: deviceLabelsSchema.optional().describe('Replaces all of its labels; `{}` removes them'),
          })
          .refine((patch) => Object.keys(patch).length > 0, 'must name at least one field to change')
          .meta({ minProperties: 1, examples: [{ disabled: true }] }),
        response: { 200: deviceSchema },
        answers: { 200: 'The changed device', 404: DEVICE_NOT_FOUND },
      },
    },
    async (request) => devices.update(request.actor, request.params.deviceId, request.body),
  );

  routes.delete(
    '/v1/devices/:deviceId',
    {
      schema: {
        tags: ['devices'],
        operationId: 'deleteDevice',
        summary: 'Delete a device (its keys and PSK too; its live session is ended)',
        description: 'Its unfinished commands end with it.',
        params: deviceParams,
        answers: { 204: 'Deleted', 404: DEVICE_NOT_FOUND },
      },
    },
    async (request, reply) => {
      await devices.delete(request.actor, request.params.deviceId);
      return reply.code(204).send();
    },
  );

  routes.post(
    '/v1/tenants/:tenantId/device-imports',
    {
      bodyLimit: IMPORT_BODY_LIMIT,
      schema: {
        tags: ['devices'],
        operationId: 'importDevices',
        summary: 'Register many devices at once, with their keys',
        description: `Up to ${MAX_IMPORTED_DEVICES.toLocaleString('en')} devices (and a body of at most 16 MiB) in one transaction: all of them are created, or none. Each generated key is in the answer and nowhere else, ever. One audit entry (\`device.import\`) records the count.`,
        params: tenantParams,
        body: z
          .strictObject({
            devices: z
              .array(
                z.strictObject({
                  id: deviceIdSchema.optional().describe('Generated when left out; stored in lowercase'),
                  name: nameSchema,
                  labels: deviceLabelsSchema.optional(),
                  offline_threshold_s: thresholdSchema.optional().meta({ default: 120 }),
                  key: z.boolean().optional().describe('Issue the device an API key').meta({ default: false }),
                }),
              )
              .min(1)
              .max(MAX_IMPORTED_DEVICES),
          })
          .meta({
            examples: [{ devices: [{ name: 'Boiler 7', labels: { site: 'berlin' }, key: true }, { id: 'd7b1c0e2-3f44-4a91-9b2e-2c5a1f0e9d33', name: 'Boiler 8' }] }],
          }),
        response: {
          201: z.object({
            devices: z
              .array(z.object({ id: z.string().meta({ format: 'uuid' }), key: z.string().optional().describe('The API key, shown this once') }))
              .describe('In the order of the request'),
          }),
        },
        answers: {
          201: 'All created',
          400: 'An entry is not valid: the message names its index and field (`body.devices.12.name`); nothing was created',
          404: "No such tenant, or not the token's",
          409: 'Ids given twice (`duplicate_device_ids`) or taken (`device_exists`, or `device_id_unavailable` for a tenant-scoped token), named in the message; nothing was created',
          413: 'The body is over 16 MiB',
        },
      },
    },
    async (request, reply) => reply.code(201).send(await imports.import(request.actor, request.params.tenantId, request.body.devices)),
  );
};
