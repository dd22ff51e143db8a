-- API keys are stored as an HMAC-SHA-256 digest under a server secret
-- ('hmac-sha256'); keys issued before that carry an argon2id hash
-- ('argon2id') until their device next connects with them, when the key is
-- verified once with argon2 and stored as a digest.
ALTER TABLE device_keys
  ADD COLUMN scheme text NOT NULL DEFAULT 'argon2id' CHECK (scheme IN ('argon2id', 'hmac-sha256'));
-- Every new row states its scheme.
ALTER TABLE device_keys ALTER COLUMN scheme DROP DEFAULT;
