import { BadRequestError } from './errors.js';

/**
 * Keyset pagination over (created_at, id). The cursor carries the creation
 * time in microseconds — Postgres' precision — so no row is skipped or
 * repeated between pages when several rows share a millisecond.
 */
export interface PageKey {
  readonly createdUs: string;
  readonly id: string;
}

export function encodeCursor(key: PageKey): string {
  return Buffer.from(`${key.createdUs}|${key.id}`, 'utf8').toString('base64url');
}

/** The decoded cursor, or null when it is not one this service issued. */
export function decodeCursor(cursor: string): PageKey | null {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = /^(\d{1,20})\|([A-Za-z0-9_-]{1,64})$/.exec(text);
  if (!match?.[1] || !match[2]) return null;
  return { createdUs: match[1], id: match[2] };
}

/** The page key of a request's `cursor` (undefined for the first page); 400 for a foreign cursor. */
export function parseCursor(cursor: string | undefined): PageKey | undefined {
  if (cursor === undefined) return undefined;
  const key = decodeCursor(cursor);
  if (!key) throw new BadRequestError('querystring.cursor: not a cursor issued by this API', 'validation_failed');
  return key;
}

export interface Page<T> {
  readonly items: T[];
  /** Pass as `cursor` to get the next page; null on the last page. */
  readonly next_cursor: string | null;
}

/** Builds a page from `limit + 1` fetched rows: the extra row only says that more exist. */
export function toPage<Row extends { created_us: string }, T>(
  rows: Row[],
  limit: number,
  idOf: (row: Row) => string,
  map: (row: Row) => T,
): Page<T> {
  const visible = rows.slice(0, limit);
  const last = visible[visible.length - 1];
  return {
    items: visible.map(map),
    next_cursor: rows.length > limit && last ? encodeCursor({ createdUs: last.created_us, id: idOf(last) }) : null,
  };
}
