-- Last known liveness of each device. Redis holds the live state; these columns
-- are written on online/offline transitions and, for last_seen_at, in periodic
-- batches, so listing devices by status needs no Redis round trip per device.
ALTER TABLE devices
  ADD COLUMN online             boolean NOT NULL DEFAULT false,
  ADD COLUMN last_seen_at       timestamptz,
  ADD COLUMN status_changed_at  timestamptz;

-- Keyset pagination of a tenant's devices filtered by status.
CREATE INDEX devices_tenant_status_page ON devices (tenant_id, online, created_at, id);
