import { createHash, createHmac, createSecretKey, hash } from 'node:crypto';

export function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

const SHA256_BLOCK_BYTES = 64;

/**
 * HMAC-SHA256 (RFC 2104) of UTF-8 messages under one secret, base64url: the
 * same bytes as createHmac('sha256', secret).update(message).digest('base64url').
 * For an ASCII secret of at most one block — what the config generates — the
 * padded inner key is itself an ASCII string, so each HMAC is two one-shot
 * digests with no Hmac object to build: this runs on every CONNECT.
 */
export function createHmacSha256(secret: string): (message: string) => string {
  const key = Buffer.from(secret, 'utf8');
  // eslint-disable-next-line no-control-regex
  if (key.length > SHA256_BLOCK_BYTES || /[^\x00-\x7f]/.test(secret)) {
    const keyObject = createSecretKey(key);
    return (message) => createHmac('sha256', keyObject).update(message).digest('base64url');
  }
  const padded = Buffer.alloc(SHA256_BLOCK_BYTES);
  key.copy(padded);
  // ASCII XOR 0x36 / 0x5c stays ASCII, so UTF-8 encodes the inner pad unchanged.
  const innerPad = String.fromCharCode(...padded.map((byte) => byte ^ 0x36));
  const outerPad = Buffer.from(padded.map((byte) => byte ^ 0x5c));
  return (message) => hash('sha256', Buffer.concat([outerPad, hash('sha256', innerPad + message, 'buffer')]), 'base64url');
}
