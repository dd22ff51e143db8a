-- The queue-head function has one right plan: the queued commands of the
-- given devices through commands_queued_head, the rows to put right through
-- the primary key. Without table scans (0015 turned bitmap scans off) the
-- planner has no other, so the function keeps the plans it makes instead of
-- planning its statements at each call (0012), which was 4 % of
-- Postgres's CPU under a stream of commands; a plan made while the table was
-- small can no longer be a scan of the whole table.
ALTER FUNCTION commands_put_queue_heads(uuid[]) SET enable_seqscan = off;
ALTER FUNCTION commands_put_queue_heads(uuid[]) RESET plan_cache_mode;
