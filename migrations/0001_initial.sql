-- Registry of tenants, devices and their credentials, admin tokens and the audit log.

CREATE TABLE tenants (
  id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
  id                   uuid PRIMARY KEY,
  tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name                 text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  disabled             boolean NOT NULL DEFAULT false,
  offline_threshold_s  integer NOT NULL DEFAULT 120 CHECK (offline_threshold_s BETWEEN 10 AND 86400),
  decoder              jsonb,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination of a tenant's devices in creation order.
CREATE INDEX devices_tenant_page ON devices (tenant_id, created_at, id);

-- API keys: the secret is never stored, only its argon2id hash. The public id is
-- part of the presented key so one row is verified, not every key of the device.
CREATE TABLE device_keys (
  id            text PRIMARY KEY,
  device_id     uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  hash          text NOT NULL,
  label         text CHECK (char_length(label) <= 200),
  created_at    timestamptz NOT NULL DEFAULT now(),
  not_after     timestamptz,
  revoked_at    timestamptz,
  last_used_at  timestamptz
);
CREATE INDEX device_keys_device ON device_keys (device_id, created_at, id);

CREATE TABLE device_psk (
  device_id   uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
  hash        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Admin tokens carry 256 random bits, so a SHA-256 digest is a sufficient
-- (and constant-cost) stored form; tenant_id NULL means a global token.
CREATE TABLE admin_tokens (
  id            text PRIMARY KEY,
  digest        bytea NOT NULL,
  label         text CHECK (char_length(label) <= 200),
  tenant_id     text REFERENCES tenants (id) ON DELETE CASCADE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz,
  last_used_at  timestamptz
);

CREATE TABLE audit_log (
  id           bigserial PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT now(),
  actor        text NOT NULL,
  action       text NOT NULL,
  object_type  text NOT NULL,
  object_id    text NOT NULL,
  tenant_id    text,
  request_id   text,
  source_ip    text,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at, id);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id, at, id);
