-- Fewer index entries per command. A command's state changes several times
-- (queued, sent, delivered, acked), and a change of an indexed column writes a
-- new entry into every index of the table for that row version, so each index
-- costs one entry per version, kept for as long as the command is.
--
-- seq: its values come from the identity alone (GENERATED ALWAYS), and every
-- query reads it per device (commands_queued_head), never on its own; the
-- unique index over every version of every command checked nothing.
ALTER TABLE commands DROP CONSTRAINT commands_seq_key;

-- The idempotency key: most commands have none, and a NULL key never
-- conflicts, so the unique index holds only the commands that have one.
CREATE UNIQUE INDEX commands_idempotency_key_set ON commands (tenant_id, device_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
ALTER TABLE commands DROP CONSTRAINT commands_idempotency_key;
ALTER INDEX commands_idempotency_key_set RENAME TO commands_idempotency_key;

-- Unfinished commands: one index for both the count per device (every
-- create) and the count per state (the queue depth metric), in place of one each.
DROP INDEX commands_unfinished;
DROP INDEX commands_device_unfinished;
CREATE INDEX commands_device_unfinished ON commands (device_id, state) WHERE finished_at IS NULL;
