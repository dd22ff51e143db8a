-- A key that gets a not_after (a rotation's grace period, or an expiry given
-- at issue) ends the sessions opened with it at that time: one replica claims
-- the key once it is due and disconnects those sessions. sessions_ended_at
-- records the claim, so it happens once, also across restarts.
ALTER TABLE device_keys ADD COLUMN sessions_ended_at timestamptz;
-- Keys already past their expiry have no live session left to end.
UPDATE device_keys SET sessions_ended_at = not_after WHERE not_after IS NOT NULL AND not_after <= now();
CREATE INDEX device_keys_session_deadlines ON device_keys (not_after)
  WHERE sessions_ended_at IS NULL AND not_after IS NOT NULL AND revoked_at IS NULL;
