import type { Queryable } from '../../infra/transaction.js';

export interface StoredStatus {
  readonly deviceId: string;
  readonly online: boolean;
  /** When `online` became true; orders concurrent writers. */
  readonly changedAt: Date;
  readonly lastSeenAt: Date;
}

/** The last known liveness of devices in Postgres (the live state is in Redis). */
export function createLivenessRepository() {
  return {
    /**
     * Writes statuses in one statement. Replicas write in any order, so a status
     * only replaces one that changed earlier, and last_seen_at only moves forward.
     * Devices deleted meanwhile are skipped.
     */
    async saveStatuses(db: Queryable, statuses: readonly StoredStatus[]): Promise<void> {
      if (statuses.length === 0) return;
      await db.query(
        `UPDATE devices AS d SET
           online = CASE WHEN d.status_changed_at IS NULL OR d.status_changed_at <= v.changed_at THEN v.online ELSE d.online END,
           status_changed_at = GREATEST(d.status_changed_at, v.changed_at),
           last_seen_at = GREATEST(d.last_seen_at, v.last_seen_at)
         FROM unnest($1::uuid[], $2::boolean[], $3::timestamptz[], $4::timestamptz[]) AS v(id, online, changed_at, last_seen_at)
         WHERE d.id = v.id`,
        [
          statuses.map((s) => s.deviceId),
          statuses.map((s) => s.online),
          statuses.map((s) => s.changedAt),
          statuses.map((s) => s.lastSeenAt),
        ],
      );
    },
  };
}

export type LivenessRepository = ReturnType<typeof createLivenessRepository>;
