import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { deviceParams } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { DeviceStatusService } from './device-status-service.js';

export const deviceStatusSchema = z.object({
  device_id: z.string(),
  online: z.boolean(),
  connected: z.boolean(),
  last_seen_at: z.string().nullable(),
  connected_at: z.string().nullable(),
  disconnected_at: z.string().nullable(),
  disconnect_reason: z.string().nullable(),
  offline_threshold_s: z.number().int(),
});

export const deviceStatusRoutes: FastifyPluginAsync<{ statuses: DeviceStatusService }> = async (app, { statuses }) => {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/devices/:deviceId/status',
    { schema: { params: deviceParams, response: { 200: deviceStatusSchema } } },
    async (request) => statuses.get(request.actor, request.params.deviceId),
  );
};
