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
 * The audit rows of changes that the same statement makes, as the body of a
 * data-modifying CTE: `INSERT … SELECT … FROM source`, one entry per row of
 * `source` (which may carry its own joins and WHERE), each field an SQL
 * expression over that row.
 */
export function auditInsertFrom(
  source: string,
  row: { at: string; actor: string; action: string; objectType: string; objectId: string; tenantId: string; requestId: string; sourceIp: string; details: string },
): string {
  return `INSERT INTO audit_log (at, actor, action, object_type, object_id, tenant_id, request_id, source_ip, details)
          SELECT ${row.at}, ${row.actor}, ${row.action}, ${row.objectType}, ${row.objectId}, ${row.tenantId}, ${row.requestId}, ${row.sourceIp}, ${row.details}
            FROM ${source}`;
}

/**
 * The actor and entry fields of several changes as six parallel arrays
 * (token id, action, object type, request id, source IP, details as JSON
 * text), for `unnest` beside the changes; null everywhere for a change not audited.
 */
export function auditColumns(audits: readonly ({ actor: Actor; entry: Pick<AuditEntry, 'action' | 'objectType' | 'details'> } | null)[]): unknown[][] {
  return [
    audits.map((audit) => audit?.actor.tokenId ?? null),
    audits.map((audit) => audit?.entry.action ?? null),
    audits.map((audit) => audit?.entry.objectType ?? null),
    audits.map((audit) => audit?.actor.requestId ?? null),
    audits.map((audit) => audit?.actor.sourceIp ?? null),
    audits.map((audit) => (audit ? JSON.stringify(recordedDetails(audit.actor, audit.entry)) : null)),
  ];
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
