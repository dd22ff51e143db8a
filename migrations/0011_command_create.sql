-- A command is created in one statement (`create` in
-- src/modules/commands/command-repository.ts): it locks its device's row,
-- then asks these two functions whether the idempotency key was used and how
-- many commands are unfinished. They are VOLATILE, so each reads with a
-- snapshot taken when it runs, after the lock: it sees every command that a
-- create holding the lock before committed. The statement's own snapshot,
-- taken before it waited for the lock, would not, and two creates at once
-- could both pass the pending limit.

CREATE FUNCTION commands_unfinished(device uuid) RETURNS bigint LANGUAGE sql VOLATILE AS $$
  SELECT count(*) FROM commands WHERE device_id = device AND finished_at IS NULL
$$;

CREATE FUNCTION commands_with_idempotency_key(tenant text, device uuid, key text) RETURNS SETOF commands LANGUAGE sql VOLATILE AS $$
  SELECT * FROM commands WHERE tenant_id = tenant AND device_id = device AND idempotency_key = key
$$;
