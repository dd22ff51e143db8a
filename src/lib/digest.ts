import { createHmac, createSecretKey, hash } from 'node:crypto';

export function sha256(value: string): Buffer {
  return hash('sha256', value, 'buffer');
}

/** HMAC-SHA256 of UTF-8 messages under one secret, base64url. */
export function createHmacSha256(secret: string): (message: string) => string {
  const key = createSecretKey(Buffer.from(secret, 'utf8'));
  return (message) => createHmac('sha256', key).update(message).digest('base64url');
}
