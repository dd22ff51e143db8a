import { createHash, timingSafeEqual } from 'node:crypto';

export function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Constant-time equality of two strings of any length (compares their digests). */
export function constantTimeEquals(presented: string, expected: string): boolean {
  return timingSafeEqual(sha256(presented), sha256(expected));
}
