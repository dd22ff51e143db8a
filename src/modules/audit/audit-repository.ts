import type { Queryable } from '../../infra/transaction.js';
import type { Actor } from '../../lib/actor.js';

export interface AuditEntry {
  readonly action: string;
  readonly objectType: 'tenant' | 'device' | 'device_key' | 'device_psk' | 'admin_token' | 'command' | 'command_job';
  readonly objectId: string;
  readonly tenantId: string | null;
  /**
   * Non-secret facts about the change (changed fields, labels, expiry). Never
   * a secret, nor a command's params. `client_request_id` is added from the
   * actor.
   */
  readonly details?: Record<string, unknown>;
}

export interface AuditRow {
  id: string;
  at: Date;
  actor: string;
  action: string;
  object_type: string;
  object_id: string;
  tenant_id: string | null;
  request_id: string | null;
  source_ip: string | null;
  details: Record<string, unknown>;
}

export interface AuditQuery {
  tenantId?: string;
  objectType?: string;
  objectId?: string;
  since?: Date;
  until?: Date;
  /** Return entries older than this id (the cursor of the previous page). */
  beforeId?: string;
  limit: number;
}

/** The details recorded: the entry's, then the client's request id (last, so that no entry's own details can stand in for what the client sent). */
function recordedDetails(actor: Actor, entry: Pick<AuditEntry, 'details'>): Record<string, unknown> {
  return actor.clientRequestId ? { ...entry.details, client_request_id: actor.clientRequestId } : (entry.details ?? {});
}

/**
 * The audit row of a change that the same statement makes, as the body of a
 * data-modifying CTE: `INSERT … SELECT … FROM source`, one entry per row of
 * `source`, whose time, object id and tenant are SQL expressions over that
 * row. `param` binds a value and returns its placeholder.
 */
export function auditInsertFrom(
  source: string,
  row: { at: string; objectId: string; tenantId: string },
  actor: Actor,
  entry: Pick<AuditEntry, 'action' | 'objectType' | 'details'>,
  param: (value: unknown) => string,
): string {
  return `INSERT INTO audit_log (at, actor, action, object_type, object_id, tenant_id, request_id, source_ip, details)
          SELECT ${row.at}, ${param(actor.tokenId)}, ${param(entry.action)}, ${param(entry.objectType)}, ${row.objectId}, ${row.tenantId},
                 ${param(actor.requestId)}, ${param(actor.sourceIp)}, ${param(JSON.stringify(recordedDetails(actor, entry)))}::jsonb
            FROM ${source}`;
}

export function createAuditRepository() {
  return {
    /** Written in the transaction of the change it describes. */
    async record(db: Queryable, actor: Actor, entry: AuditEntry, at: Date): Promise<void> {
      const details = recordedDetails(actor, entry);
      await db.query(
        `INSERT INTO audit_log (at, actor, action, object_type, object_id, tenant_id, request_id, source_ip, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          at,
          actor.tokenId,
          entry.action,
          entry.objectType,
          entry.objectId,
          entry.tenantId,
          actor.requestId,
          actor.sourceIp,
          JSON.stringify(details),
        ],
      );
    },

    /** Newest first. */
    async list(db: Queryable, query: AuditQuery): Promise<AuditRow[]> {
      const conditions: string[] = [];
      const values: unknown[] = [];
      const where = (sql: string, value: unknown) => {
        values.push(value);
        conditions.push(sql.replace('?', `$${values.length}`));
      };
      if (query.tenantId !== undefined) where('tenant_id = ?', query.tenantId);
      if (query.objectType !== undefined) where('object_type = ?', query.objectType);
      if (query.objectId !== undefined) where('object_id = ?', query.objectId);
      if (query.since !== undefined) where('at >= ?', query.since);
      if (query.until !== undefined) where('at < ?', query.until);
      if (query.beforeId !== undefined) where('audit_log.id < ?::bigint', query.beforeId);
      values.push(query.limit + 1);
      const { rows } = await db.query<AuditRow>(
        `SELECT id::text AS id, at, actor, action, object_type, object_id, tenant_id, request_id, source_ip, details
           FROM audit_log
          ${conditions.length ? `WHERE ${conditions.join(' AND ')}` : ''}
          ORDER BY audit_log.id DESC
          LIMIT $${values.length}`,
        values,
      );
      return rows;
    },
  };
}

export type AuditRepository = ReturnType<typeof createAuditRepository>;
