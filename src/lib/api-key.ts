import { randomBytes } from 'node:crypto';

/**
 * Device API keys look like `sk_live_<key id>_<secret>`:
 *  - key id: 12 characters of lowercase base32, public, the primary key of the
 *    device_keys row, so authentication checks one stored digest rather than
 *    every key of the device;
 *  - secret: 32 random bytes (256 bits), base64url, 43 characters.
 * Only a keyed digest of the whole key is stored (see lib/key-digest.ts).
 */
export const API_KEY_PREFIX = 'sk_live_';
const KEY_ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const KEY_ID_LENGTH = 12;
const SECRET_BYTES = 32;
const API_KEY_PATTERN = /^sk_live_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$/;
const KEY_ID_PATTERN = /^[a-z2-7]{12}$/;

export interface GeneratedApiKey {
  readonly keyId: string;
  /** The full key, shown to the caller exactly once. */
  readonly key: string;
  /** What listings show in place of the key: enough to recognise it, nothing to use. */
  readonly displayPrefix: string;
}

export function generateKeyId(): string {
  const bytes = randomBytes(KEY_ID_LENGTH);
  let id = '';
  for (const byte of bytes) id += KEY_ID_ALPHABET[byte & 31];
  return id;
}

/** Whether a string is an id generateKeyId could have made. */
export function isKeyId(value: string): boolean {
  return KEY_ID_PATTERN.test(value);
}

export function generateApiKey(): GeneratedApiKey {
  const keyId = generateKeyId();
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { keyId, key: `${API_KEY_PREFIX}${keyId}_${secret}`, displayPrefix: displayPrefix(keyId) };
}

export function displayPrefix(keyId: string): string {
  return `${API_KEY_PREFIX}${keyId}_…`;
}

/** The key id of a presented password if it has the shape of an API key, else null (maybe a PSK). */
export function parseApiKeyId(presented: string): string | null {
  const match = API_KEY_PATTERN.exec(presented);
  return match ? (match[1] ?? null) : null;
}
