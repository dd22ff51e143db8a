import { timingSafeEqual } from 'node:crypto';
import { createHmacSha256 } from './digest.js';

/** Which configured secret a stored key digest was made with. */
export type KeyDigestMatch = 'current' | 'previous';

export interface KeyDigest {
  /** What is stored for a newly issued API key: its digest under the current secret. */
  digest(key: string): string;
  /**
   * Whether `key` is the key whose digest is `stored`, and under which
   * secret; null when it is not. Compares in constant time.
   */
  match(stored: string, key: string): KeyDigestMatch | null;
}

function sameDigest(stored: string, computed: string): boolean {
  const a = Buffer.from(stored, 'utf8');
  const b = Buffer.from(computed, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * API keys are stored as HMAC-SHA-256 of the whole key under a server secret
 * (KEY_DIGEST_SECRET) that is never in the database. The registry generates
 * every key with 256 random bits, so one keyed digest is beyond brute force
 * and costs microseconds to check, where a memory-hard hash would make a
 * fleet reconnecting at once wait on hashing. While a rotation of the secret
 * is under way the previous one is tried second.
 */
export function createKeyDigest(secret: string, previous: string | null): KeyDigest {
  const current = createHmacSha256(secret);
  const before = previous === null ? null : createHmacSha256(previous);
  return {
    digest: current,
    match(stored, key) {
      if (sameDigest(stored, current(key))) return 'current';
      if (before && sameDigest(stored, before(key))) return 'previous';
      return null;
    },
  };
}
