import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceParams, isoTimestamp } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { DeviceStatusService } from './device-status-service.js';

export const deviceStatusSchema = z
  .object({
    device_id: z.string().meta({ format: 'uuid' }),
    online: z.boolean().describe('Telemetry arrived within the offline threshold'),
    connected: z.boolean().describe('An MQTT session is open'),
    last_seen_at: isoTimestamp.nullable().describe('The last telemetry message'),
    connected_at: isoTimestamp.nullable(),
    disconnected_at: isoTimestamp.nullable(),
    disconnect_reason: z.string().nullable().describe("EMQX's reason for the last disconnect").meta({ examples: ['keepalive_timeout'] }),
    offline_threshold_s: z.number().int(),
  })
  .meta({ id: 'DeviceStatus' });

export const deviceStatusRoutes: FastifyPluginAsync<{ statuses: DeviceStatusService }> = async (app, { statuses }) => {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/devices/:deviceId/status',
    {
      schema: {
        tags: ['devices'],
        operationId: 'getDeviceStatus',
        summary: 'Live status of a device',
        description:
          '`online` follows telemetry: the first message makes a device online, and no telemetry for longer than `offline_threshold_s` makes it offline, even while its MQTT session is open. `connected` and the session times come from EMQX\'s `client.connected` and `client.disconnected` events.',
        params: deviceParams,
        response: { 200: deviceStatusSchema },
        answers: { 200: 'The status', 404: "No such device, or not in the token's tenant" },
      },
    },
    async (request) => statuses.get(request.actor, request.params.deviceId),
  );
};
