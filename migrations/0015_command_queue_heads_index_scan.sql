-- The queue-head function reads the queued commands of the devices it is
-- given, which commands_queued_head (device_id, seq) holds. While the
-- table's statistics lag behind its growth, as they do on a busy table
-- between two ANALYZEs, the planner took other indexes for nearly empty:
-- a bitmap AND of commands_queued_head with commands_expiring, read whole
-- at every create and every send, with every entry the earlier versions of
-- commands had left there (a sixth of Postgres's CPU under a stream of
-- commands), or a scan of all of commands_due. A bitmap scan never marks the
-- dead entries it meets, so each one read them all again; an index scan
-- marks them, and the next one skips them.
ALTER FUNCTION commands_put_queue_heads(uuid[]) SET enable_bitmapscan = off;

-- What the dispatcher may send next: the heads of device queues, the only
-- queued commands with a send_after. The commands behind them are no longer
-- in it (they were, with a NULL key), and a query for a device's queued
-- commands cannot take this index for one of them.
CREATE INDEX commands_due_heads ON commands (send_after) WHERE state = 'queued' AND send_after IS NOT NULL;
DROP INDEX commands_due;
ALTER INDEX commands_due_heads RENAME TO commands_due;
