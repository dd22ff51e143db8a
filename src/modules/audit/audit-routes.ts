import type { FastifyPluginAsync } from 'fastify';
import type { Pool } from 'pg';
import { z } from 'zod';
import { pageSchema, tenantIdSchema } from '../../http/common-schemas.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import { BadRequestError, ForbiddenError } from '../../lib/errors.js';
import type { AuditRepository } from './audit-repository.js';

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
  object_type: z.enum(['tenant', 'device', 'device_key', 'device_psk', 'admin_token']).optional(),
  object_id: z.string().min(1).max(200).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  until: z.iso.datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().min(1).max(64).optional(),
});

// Audit pages run newest first by entry id; the cursor is the last id seen.
const encodeAuditCursor = (id: string) => Buffer.from(`audit|${id}`).toString('base64url');
function decodeAuditCursor(cursor: string): string {
  const match = /^audit\|(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match?.[1]) throw new BadRequestError('querystring.cursor: not a cursor issued by this API', 'validation_failed');
  return match[1];
}

export const auditRoutes: FastifyPluginAsync<{ pool: Pool; audit: AuditRepository }> = async (app, { pool, audit }) => {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/audit',
    { schema: { querystring: auditQuerySchema, response: { 200: pageSchema(auditEntrySchema) } } },
    async (request) => {
      if (request.actor.tenantId !== null) throw new ForbiddenError('the audit log needs a global admin token');
      const query = request.query;
      const rows = await audit.list(pool, {
        limit: query.limit,
        ...(query.tenant_id !== undefined ? { tenantId: query.tenant_id } : {}),
        ...(query.object_type !== undefined ? { objectType: query.object_type } : {}),
        ...(query.object_id !== undefined ? { objectId: query.object_id } : {}),
        ...(query.since !== undefined ? { since: new Date(query.since) } : {}),
        ...(query.until !== undefined ? { until: new Date(query.until) } : {}),
        ...(query.cursor !== undefined ? { beforeId: decodeAuditCursor(query.cursor) } : {}),
      });
      const items = rows.slice(0, query.limit);
      const last = items[items.length - 1];
      return {
        items: items.map((row) => ({ ...row, at: row.at.toISOString() })),
        next_cursor: rows.length > query.limit && last ? encodeAuditCursor(last.id) : null,
      };
    },
  );
};
