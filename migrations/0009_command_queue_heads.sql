-- Only the head of a device's queue (its oldest queued command) is ever due:
-- it alone has a send_after, the commands queued behind it have NULL. The
-- dispatcher's claim then reads due heads only, however many commands wait
-- behind offline devices (before: every queued command was "due" and each
-- claim walked past all those blocked behind their head).
--
-- Statement-level triggers keep that true for every change to a device's
-- queue: a command created, or one entering or leaving `queued` (an update
-- trigger with transition tables cannot name its columns, so it looks at
-- every update statement and returns at once when no state changed). Each takes
-- a per-device advisory lock (in device order, so two statements over the
-- same devices cannot deadlock) before it looks at the queue, so two
-- transactions changing one device's queue at once see each other's work.
-- Rows another transaction holds are skipped: it changes them itself, and
-- its own trigger then puts the head right.

CREATE FUNCTION commands_put_queue_heads(devices uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(731040212, hashtext(device_id::text))
     FROM (SELECT DISTINCT unnest(devices) AS device_id ORDER BY 1) sorted;
  WITH queued AS (
         SELECT id, send_after, seq = min(seq) OVER (PARTITION BY device_id) AS is_head
           FROM commands WHERE device_id = ANY(devices) AND state = 'queued'
       ),
       wrong AS (SELECT id FROM queued WHERE (send_after IS NULL) = is_head),
       locked AS (SELECT id FROM commands WHERE id = ANY(ARRAY(SELECT id FROM wrong)) FOR UPDATE SKIP LOCKED)
  -- Wrong either way round: a head without a send_after, or one behind it with one.
  UPDATE commands SET send_after = CASE WHEN send_after IS NULL THEN now() END
   WHERE id = ANY(ARRAY(SELECT id FROM locked));
END $$;

CREATE FUNCTION commands_queue_heads_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM commands_put_queue_heads(ARRAY(SELECT DISTINCT device_id FROM inserted WHERE state = 'queued'));
  RETURN NULL;
END $$;

-- Without nested loops: the plan of the join is cached from the first call,
-- whose transition tables may have held one row; a nested loop over two tables
-- of 10,000 rows each took seconds.
CREATE FUNCTION commands_queue_heads_after_update() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
DECLARE
  devices uuid[] := ARRAY(
    SELECT DISTINCT n.device_id FROM after_update n JOIN before_update o ON o.id = n.id
     WHERE (o.state = 'queued') <> (n.state = 'queued'));
BEGIN
  IF cardinality(devices) > 0 THEN
    PERFORM commands_put_queue_heads(devices);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER commands_queue_heads_insert AFTER INSERT ON commands
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION commands_queue_heads_after_insert();
CREATE TRIGGER commands_queue_heads_update AFTER UPDATE ON commands
  REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update FOR EACH STATEMENT EXECUTE FUNCTION commands_queue_heads_after_update();

-- The queues as they are: heads keep their send_after, the others wait.
UPDATE commands c SET send_after = NULL
 WHERE c.state = 'queued'
   AND EXISTS (SELECT 1 FROM commands o WHERE o.device_id = c.device_id AND o.state = 'queued' AND o.seq < c.seq);

-- A device's unfinished commands, counted at every create (before: the
-- device's whole history was read, 40 ms at 100,000 finished commands).
CREATE INDEX commands_device_unfinished ON commands (device_id) WHERE finished_at IS NULL;
