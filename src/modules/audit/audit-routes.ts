import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { CURSOR_DESCRIPTION, isoTimestamp, pageQuerySchema, pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import type { AuditService } from './audit-service.js';

const auditEntrySchema = z
  .object({
    id: z.string(),
    at: isoTimestamp,
    actor: z.string().describe('`root`, or the id of the admin token'),
    action: z.string().meta({ examples: ['key.revoke'] }),
    object_type: z.string(),
    object_id: z.string(),
    tenant_id: z.string().nullable(),
    request_id: z.string().nullable().describe('The id the service gave the request (its `x-request-id` answer header)'),
    source_ip: z.string().nullable(),
    details: z
      .record(z.string(), z.unknown())
      .describe("Facts about the change, never a secret or a command's params; `client_request_id` is the client's own `x-request-id`, when it sent one"),
  })
  .meta({ id: 'AuditEntry' });

const auditQuerySchema = z.strictObject({
  tenant_id: tenantIdSchema.optional().describe('Only the entries of this tenant'),
  object_type: z.enum(['tenant', 'device', 'device_key', 'device_psk', 'admin_token', 'command', 'command_job']).optional().describe('Only the entries about this kind of object'),
  object_id: z.string().min(1).max(200).optional().describe('Only the entries about this object'),
  since: z.iso.datetime({ offset: true }).optional().describe('Only the entries at or after this time'),
  until: z.iso.datetime({ offset: true }).optional().describe('Only the entries before this time'),
  limit: pageQuerySchema.shape.limit,
  cursor: z.string().min(1).max(64).optional().describe(CURSOR_DESCRIPTION),
});

export const auditRoutes: FastifyPluginAsync<{ audit: AuditService }> = async (app, { audit }) => {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/audit',
    {
      schema: {
        tags: ['admin'],
        operationId: 'listAudit',
        summary: 'The audit log, newest first (global tokens only)',
        description:
          'Every write through this API, recorded in the transaction that made it: the acting token, action, object, tenant, time, request id and source address.',
        querystring: auditQuerySchema,
        response: { 200: pageSchema(auditEntrySchema) },
        answers: { 200: 'A page of audit entries', 403: 'The token is scoped to a tenant; the audit log needs a global one (`forbidden`)' },
      },
    },
    async (request) => audit.list(request.actor, request.query),
  );
};
