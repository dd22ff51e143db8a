import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { AuditService } from './audit-service.js';

const auditEntrySchema = z.object({
  id: z.string(),
  at: z.string(),
  actor: z.string(),
  action: z.string(),
  object_type: z.string(),
  object_id: z.string(),
  tenant_id: z.string().nullable(),
  request_id: z.string().nullable(),
  source_ip: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
});

const auditQuerySchema = z.strictObject({
  tenant_id: tenantIdSchema.optional(),
  object_type: z.enum(['tenant', 'device', 'device_key', 'device_psk', 'admin_token', 'command']).optional(),
  object_id: z.string().min(1).max(200).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  until: z.iso.datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().min(1).max(64).optional(),
});

export const auditRoutes: FastifyPluginAsync<{ audit: AuditService }> = async (app, { audit }) => {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/audit',
    { schema: { querystring: auditQuerySchema, response: { 200: pageSchema(auditEntrySchema) } } },
    async (request) => audit.list(request.actor, request.query),
  );
};
