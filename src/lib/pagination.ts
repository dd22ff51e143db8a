import { BadRequestError } from './errors.js';

/**
 * Keyset pagination over (created_at, id). The cursor carries the creation
 * time in microseconds — Postgres' precision — so no row is skipped or
 * repeated between pages when several rows share a millisecond.
 *
 * A cursor is base64url of `<first>|<id>`. Every listing says what its ids
 * look like, so a cursor it did not issue — forged, or another listing's —
 * is a 400 naming the cursor rather than a query Postgres refuses.
 */
export interface PageKey {
  readonly createdUs: string;
  readonly id: string;
}

/** Whether a string is an id of the listing's rows. */
export type IdCheck = (id: string) => boolean;

const BIGINT_MAX = 9_223_372_036_854_775_807n;
/**
 * The microseconds a created_at can carry: from Postgres' earliest
 * timestamptz (4714-11-24 BC) to the largest bigint, which created_us is
 * cast to (the latest timestamptz, in 294276, is past it).
 */
const EARLIEST_US = -210_866_803_200_000_000n;

/** Whether `text` is an integer within [min, max] as Postgres writes one (no leading zeros, no sign on 0). */
function isIntegerWithin(text: string, min: bigint, max: bigint): boolean {
  if (!/^(0|-?[1-9]\d{0,18})$/.test(text)) return false;
  const value = BigInt(text);
  return value >= min && value <= max;
}

/** Ids of a bigserial column: 1 up to the largest bigint. */
export const isSerialId: IdCheck = (id) => isIntegerWithin(id, 1n, BIGINT_MAX);

const encode = (first: string, id: string) => Buffer.from(`${first}|${id}`, 'utf8').toString('base64url');

/**
 * The two fields of a cursor; 400 unless it is base64url of text exactly as
 * `encode` writes it (Buffer skips characters base64url does not have and
 * replaces invalid UTF-8, so only a cursor that encodes back to itself is
 * taken) and its fields pass their checks.
 */
function decode(cursor: string, isFirst: (first: string) => boolean, isId: IdCheck): [first: string, id: string] {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const fields = text.split('|');
  const [first, id] = fields;
  if (
    Buffer.from(text, 'utf8').toString('base64url') !== cursor ||
    fields.length !== 2 ||
    first === undefined ||
    id === undefined ||
    !isFirst(first) ||
    !isId(id)
  ) {
    throw new BadRequestError('querystring.cursor: not a cursor issued by this API', 'validation_failed');
  }
  return [first, id];
}

export function encodeCursor(key: PageKey): string {
  return encode(key.createdUs, key.id);
}

/** The page key of a request's `cursor` (undefined for the first page); 400 for a cursor not issued for this listing. */
export function parseCursor(cursor: string | undefined, isId: IdCheck): PageKey | undefined {
  if (cursor === undefined) return undefined;
  const [createdUs, id] = decode(cursor, (first) => isIntegerWithin(first, EARLIEST_US, BIGINT_MAX), isId);
  return { createdUs, id };
}

/** A cursor for a listing ordered by id alone, tagged with the listing's name. */
export function encodeIdCursor(tag: string, id: string): string {
  return encode(tag, id);
}

/** The id of a request's `cursor` made by encodeIdCursor (undefined for the first page); 400 otherwise. */
export function parseIdCursor(cursor: string | undefined, tag: string, isId: IdCheck): string | undefined {
  if (cursor === undefined) return undefined;
  return decode(cursor, (first) => first === tag, isId)[1];
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
