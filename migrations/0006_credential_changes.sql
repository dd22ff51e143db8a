-- Changes to devices and their credentials, kept durably so that what must
-- follow them (caches dropped on every replica, sessions ended, Redis state
-- cleaned) happens even when a signal or a dependency is lost.

-- A device's credential version: a fresh value from one sequence at creation
-- and at every change that alters what may authenticate as the device. A
-- cached verification is good only while the device still has the version it
-- was made under; values are never reused, so a device re-created with a
-- freed id never matches a verification of the device it replaces.
CREATE SEQUENCE device_credential_versions;
ALTER TABLE devices ADD COLUMN credential_version bigint NOT NULL DEFAULT nextval('device_credential_versions');

-- The change log, in commit order: a change takes its position by updating
-- this one row, and the row lock is held until the change commits, so
-- positions commit in order and without gaps. Every replica reads the
-- positions after the last one it applied.
CREATE TABLE credential_change_head (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  position   bigint NOT NULL
);
INSERT INTO credential_change_head (singleton, position) VALUES (true, 0);

CREATE TABLE credential_changes (
  position   bigint PRIMARY KEY,
  kind       text NOT NULL,
  device_id  uuid NOT NULL,
  tenant_id  text NOT NULL,
  key_id     text,
  at         timestamptz NOT NULL
);
-- What pruning deletes (a replica that fell further behind starts afresh).
CREATE INDEX credential_changes_at ON credential_changes (at);

-- Work a change leaves that must be done once, by any replica, and is tried
-- again until it succeeds: `kick` ends the device's live MQTT session through
-- EMQX's REST API; `clean_up` removes or updates what Redis holds for the
-- device. A row is deleted once its work is done.
CREATE TABLE change_effects (
  id          bigserial PRIMARY KEY,
  effect      text NOT NULL CHECK (effect IN ('kick', 'clean_up')),
  -- The change that left it (a credential change kind, or key_expired).
  kind        text NOT NULL,
  device_id   uuid NOT NULL,
  tenant_id   text NOT NULL,
  key_id      text,
  created_at  timestamptz NOT NULL,
  -- Not tried before then: a retry's backoff, or the lease of a replica working on it.
  due_at      timestamptz NOT NULL,
  attempts    integer NOT NULL DEFAULT 0,
  last_error  text
);
CREATE INDEX change_effects_due ON change_effects (due_at);

-- Idempotency keys belong to a tenant's device: another tenant's device with
-- the same id (ids are freed when a device is deleted) never shares them.
ALTER TABLE commands DROP CONSTRAINT commands_device_id_idempotency_key_key;
ALTER TABLE commands ADD CONSTRAINT commands_idempotency_key UNIQUE (tenant_id, device_id, idempotency_key);
