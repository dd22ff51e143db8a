-- Commands whose session EMQX discarded (the device connected with a clean
-- start) are queued again and sent once more. The message EMQX lost is
-- remembered, so that a late delivery event of it is not taken for the new one.
ALTER TABLE commands ADD COLUMN lost_message_id text;
