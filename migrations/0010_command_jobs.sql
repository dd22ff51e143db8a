-- Command jobs: one ordinary command per targeted device of a tenant, made at
-- a bounded rate by whichever replica takes the job's next batch
-- (modules/commands/).

CREATE TABLE command_jobs (
  id                  uuid PRIMARY KEY,
  tenant_id           text NOT NULL,
  name                text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.:-]{1,64}$'),
  params              jsonb NOT NULL DEFAULT '{}'::jsonb,
  ttl_s               integer NOT NULL CHECK (ttl_s BETWEEN 10 AND 604800),
  response_timeout_s  integer CHECK (response_timeout_s BETWEEN 1 AND 86400),
  -- What was asked for: {"labels": {...}} or {"device_ids": <how many>} (the ids are the targets).
  target              jsonb NOT NULL,
  max_per_second      integer NOT NULL CHECK (max_per_second BETWEEN 1 AND 10000),
  -- preparing: its targets are being listed (by the request that creates it);
  -- running: its commands are being made and followed; completed: every
  -- target has its outcome; canceled: what EMQX had not taken was canceled.
  state               text NOT NULL CHECK (state IN ('preparing', 'running', 'completed', 'canceled')),
  reason              text,
  total               integer NOT NULL DEFAULT 0,
  -- No batch of the job's commands is made before this time (Postgres' clock):
  -- each batch moves it by batch size / max_per_second, whichever replica makes it.
  next_batch_at       timestamptz NOT NULL,
  created_at          timestamptz NOT NULL,
  updated_at          timestamptz NOT NULL,
  -- Set once nothing is left to do for the job (a canceled job waits for the
  -- publishes in flight when it was canceled).
  finished_at         timestamptz
);

CREATE INDEX command_jobs_tenant_page ON command_jobs (tenant_id, created_at, id);
CREATE INDEX command_jobs_due ON command_jobs (next_batch_at) WHERE finished_at IS NULL;
CREATE INDEX command_jobs_finished ON command_jobs (finished_at) WHERE finished_at IS NOT NULL;

-- The devices a job addresses, listed when it is created: what became of each.
CREATE TABLE command_job_targets (
  job_id      uuid NOT NULL REFERENCES command_jobs ON DELETE CASCADE,
  device_id   uuid NOT NULL,
  -- pending: no command yet; created: command_id is its command; failed or
  -- canceled: it never got one (reason: pending_limit, device_disabled,
  -- device_deleted; job_canceled).
  state       text NOT NULL CHECK (state IN ('pending', 'created', 'failed', 'canceled')),
  reason      text,
  command_id  uuid,
  PRIMARY KEY (job_id, device_id)
);

CREATE INDEX command_job_targets_pending ON command_job_targets (job_id, device_id) WHERE state = 'pending';

ALTER TABLE commands ADD COLUMN job_id uuid;
ALTER TABLE commands DROP CONSTRAINT commands_source_check;
ALTER TABLE commands ADD CONSTRAINT commands_source_check CHECK (source IN ('api', 'kafka', 'job'));
-- A job makes at most one command per device, whichever replicas work on it.
CREATE UNIQUE INDEX commands_job_device ON commands (job_id, device_id) WHERE job_id IS NOT NULL;
-- A job's commands that are not finished (its completion, its cancel).
CREATE INDEX commands_job_unfinished ON commands (job_id, state) WHERE job_id IS NOT NULL AND finished_at IS NULL;

ALTER TABLE command_status_outbox ADD COLUMN job_id uuid;
