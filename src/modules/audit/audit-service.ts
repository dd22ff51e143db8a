import type { Pool } from 'pg';
import type { Actor } from '../../lib/actor.js';
import { ForbiddenError } from '../../lib/errors.js';
import { encodeIdCursor, isSerialId, parseIdCursor, type Page } from '../../lib/pagination.js';
import type { AuditRepository, AuditRow } from './audit-repository.js';

export interface AuditEntryView extends Omit<AuditRow, 'at'> {
  at: string;
}

export interface AuditListQuery {
  limit: number;
  tenant_id?: string;
  object_type?: string;
  object_id?: string;
  since?: string;
  until?: string;
  cursor?: string;
}

// Audit pages run newest first by entry id; the cursor is the last id seen.
const CURSOR_TAG = 'audit';

export function createAuditService(deps: { pool: Pool; audit: Pick<AuditRepository, 'list'> }) {
  return {
    /** The audit log, newest first; global tokens only. */
    async list(actor: Actor, query: AuditListQuery): Promise<Page<AuditEntryView>> {
      if (actor.tenantId !== null) throw new ForbiddenError('the audit log needs a global admin token');
      const beforeId = parseIdCursor(query.cursor, CURSOR_TAG, isSerialId);
      const rows = await deps.audit.list(deps.pool, {
        limit: query.limit,
        ...(query.tenant_id !== undefined ? { tenantId: query.tenant_id } : {}),
        ...(query.object_type !== undefined ? { objectType: query.object_type } : {}),
        ...(query.object_id !== undefined ? { objectId: query.object_id } : {}),
        ...(query.since !== undefined ? { since: new Date(query.since) } : {}),
        ...(query.until !== undefined ? { until: new Date(query.until) } : {}),
        ...(beforeId !== undefined ? { beforeId } : {}),
      });
      const items = rows.slice(0, query.limit);
      const last = items[items.length - 1];
      return {
        items: items.map((row) => ({ ...row, at: row.at.toISOString() })),
        next_cursor: rows.length > query.limit && last ? encodeIdCursor(CURSOR_TAG, last.id) : null,
      };
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
