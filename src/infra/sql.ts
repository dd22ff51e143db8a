import type { PageKey } from '../lib/pagination.js';

/** created_at in microseconds since the epoch, as text (exact, unlike a JS Date). */
export const CREATED_US = `(extract(epoch FROM created_at) * 1000000)::bigint::text AS created_us`;

/**
 * The keyset condition "after this (created_at, id)", with its parameters
 * appended to `values`. Returns 'TRUE' when there is no cursor.
 */
export function afterKey(values: unknown[], after: PageKey | undefined, idCast = ''): string {
  if (!after) return 'TRUE';
  values.push(after.createdUs, after.id);
  const us = `$${values.length - 1}`;
  const id = `$${values.length}${idCast}`;
  // Parsed as an interval rather than multiplied by one: the multiplication
  // goes through double precision, which drops microseconds past 2^53 and
  // overflows just short of the largest bigint a cursor may carry.
  return `(created_at, id) > (timestamptz 'epoch' + (${us}::bigint || ' microseconds')::interval, ${id})`;
}
