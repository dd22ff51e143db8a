-- The queue-head function plans its statements at every call, for the
-- commands table as it is then. PL/pgSQL otherwise keeps a generic plan
-- from the first calls of each connection: made while the table was small
-- (a new database, or one whose statistics are not yet analyzed), it read the
-- whole table at every create and every claim, a cost that grew with the
-- table until the next ANALYZE.
ALTER FUNCTION commands_put_queue_heads(uuid[]) SET plan_cache_mode = force_custom_plan;
