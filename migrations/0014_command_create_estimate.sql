-- commands_with_idempotency_key returns at most one command (the unique index
-- commands_idempotency_key), but a set-returning SQL function is estimated at
-- 1,000 rows unless told. With 64 creates in one statement the planner then
-- expected 64,000 earlier commands, costed the create above jit_above_cost
-- (100,000 by default), and Postgres compiled it with LLVM on every
-- execution: a fifth of Postgres's CPU under a stream of commands.
ALTER FUNCTION commands_with_idempotency_key(text, uuid, text) ROWS 1;
