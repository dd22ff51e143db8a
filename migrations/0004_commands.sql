-- Commands to devices (platform → device through EMQX) and the status records
-- that tell other services how each one is doing.
--
-- No foreign keys to devices or tenants: a command is history, kept for
-- COMMANDS_RETENTION_DAYS after it finished, also when its device is gone.

CREATE TABLE commands (
  id                  uuid PRIMARY KEY,
  -- Creation order, exact where timestamps tie: a device's commands are sent in this order.
  seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  tenant_id           text NOT NULL,
  device_id           uuid NOT NULL,
  name                text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.:-]{1,64}$'),
  params              jsonb NOT NULL DEFAULT '{}'::jsonb,
  state               text NOT NULL CHECK (state IN (
                        'queued', 'sent', 'delivered', 'acked',
                        'expired', 'dropped', 'canceled', 'succeeded', 'failed', 'timed_out')),
  -- Why the command is in its state, when that is not obvious (dropped: queue_full, ...).
  reason              text,
  source              text NOT NULL CHECK (source IN ('api', 'kafka')),
  -- The Idempotency-Key header, or the command_id of a Kafka request.
  idempotency_key     text CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
  -- Digest of what was asked for, to tell a retried create from a different one under the same key.
  request_digest      text NOT NULL,
  ttl_s               integer NOT NULL CHECK (ttl_s BETWEEN 10 AND 604800),
  -- NULL: no reply expected (replies were not enabled when the command was created).
  response_timeout_s  integer CHECK (response_timeout_s BETWEEN 1 AND 86400),
  emqx_message_id     text,
  attempts            integer NOT NULL DEFAULT 0,
  last_error          text,
  -- Queued commands: not sent before this time (backoff, or waiting for the device to subscribe).
  send_after          timestamptz,
  -- A publish to EMQX is in flight until then (the replica that claimed it may have died).
  lease_until         timestamptz,
  -- An attempt got no answer: EMQX may have taken the command, so it can no longer be canceled.
  possibly_sent       boolean NOT NULL DEFAULT false,
  -- When the device last subscribed to its command topic while the command was queued.
  woken_at            timestamptz,
  created_at          timestamptz NOT NULL,
  updated_at          timestamptz NOT NULL,
  expires_at          timestamptz NOT NULL,
  sent_at             timestamptz,
  delivered_at        timestamptz,
  acked_at            timestamptz,
  finished_at         timestamptz,
  -- Acked commands that expect a reply: timed_out unless one arrives by then.
  reply_due_at        timestamptz,
  reply_status        text CHECK (reply_status IN ('ok', 'error')),
  reply_result        jsonb,
  replied_at          timestamptz,
  UNIQUE (device_id, idempotency_key)
);

-- A device's commands in creation order (listing, and the head of its queue).
CREATE INDEX commands_device_page ON commands (device_id, created_at, id);
CREATE INDEX commands_device_state_page ON commands (device_id, state, created_at, id);
CREATE INDEX commands_queued_head ON commands (device_id, seq) WHERE state = 'queued';
-- What the dispatcher may send next.
CREATE INDEX commands_due ON commands (send_after) WHERE state = 'queued';
-- What the sweeper expires or times out.
CREATE INDEX commands_expiring ON commands (expires_at) WHERE state IN ('queued', 'sent', 'delivered');
CREATE INDEX commands_awaiting_reply ON commands (reply_due_at) WHERE state = 'acked' AND reply_due_at IS NOT NULL;
-- What retention deletes; and the unfinished ones, counted by state for the metrics.
CREATE INDEX commands_finished ON commands (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX commands_unfinished ON commands (state) WHERE finished_at IS NULL;

-- One row per state change, written in the transaction that makes the change
-- and deleted once Kafka acknowledged its record on commands.status.{tenant}.
CREATE TABLE command_status_outbox (
  id               bigserial PRIMARY KEY,
  command_id       uuid NOT NULL,
  tenant_id        text NOT NULL,
  device_id        uuid NOT NULL,
  name             text NOT NULL,
  state            text NOT NULL,
  previous_state   text,
  reason           text,
  idempotency_key  text,
  at               timestamptz NOT NULL
);
