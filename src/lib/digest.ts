import { createHash, createHmac, createSecretKey } from 'node:crypto';

export function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** HMAC-SHA256 of UTF-8 messages under one secret, base64url. */
export function createHmacSha256(secret: string): (message: string) => string {
  const key = createSecretKey(Buffer.from(secret, 'utf8'));
  return (message) => createHmac('sha256', key).update(message).digest('base64url');
}
