import { isUtf8 } from 'node:buffer';
import type { DecoderConfig } from './decoder-config.js';

export const TELEMETRY_POINT_SCHEMA = 'telemetry_point/v1';

/**
 * TelemetryPoint v1 (docs/telemetry.md), field for field, plus `timestamp_source`,
 * which says where `timestamp` came from:
 *  - `received_at`: the device has no timestamp decoder, so it is the arrival time;
 *  - `payload`: extracted from the payload by the device's decoder;
 *  - `received_at_fallback`: the decoder is configured but the field was
 *    missing, malformed or outside the sane window, so the arrival time is used.
 */
export interface TelemetryPoint {
  schema: typeof TELEMETRY_POINT_SCHEMA;
  tenant_id: string;
  device_id: string;
  protocol: 'mqtt';
  message_id: string;
  timestamp: string;
  received_at: string;
  numeric_values: Record<string, number>;
  string_values: Record<string, string>;
  boolean_values: Record<string, boolean>;
  ignored_fields: string[];
  timestamp_source: 'received_at' | 'payload' | 'received_at_fallback';
}

export interface TelemetryLimits {
  maxPayloadBytes: number;
  /** Leaves after flattening, ignored ones included. */
  maxFields: number;
  /** Characters (code points) of a flattened key. */
  maxKeyLength: number;
  /** UTF-8 bytes of one string value. */
  maxStringBytes: number;
  /** Object nesting: top-level fields are at depth 1. */
  maxDepth: number;
  /** How far before the arrival time an extracted timestamp may be. */
  timestampMaxAgeMs: number;
  /** How far after the arrival time an extracted timestamp may be (clock skew). */
  timestampMaxAheadMs: number;
}

/** Why a payload cannot become a TelemetryPoint; each is a dead-letter reason. */
export type PayloadRejection =
  | 'payload_too_large'
  | 'invalid_utf8'
  | 'invalid_json'
  | 'not_an_object'
  | 'too_many_fields'
  | 'too_deep'
  | 'key_too_long'
  | 'invalid_key'
  | 'string_too_long';

export type NormalizeResult =
  | { ok: true; point: TelemetryPoint }
  | { ok: false; reason: PayloadRejection; detail: string };

export interface NormalizeInput {
  /** The payload exactly as the device sent it (already base64-decoded if it was encoded). */
  payload: Buffer;
  tenantId: string;
  deviceId: string;
  messageId: string;
  receivedAtMs: number;
  decoder: DecoderConfig | null;
}

class Rejection extends Error {
  constructor(
    readonly reason: PayloadRejection,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/**
 * C0/C1 control characters cannot be shown or queried sanely downstream, and
 * a lone surrogate (from a `\ud800` escape) is not valid UTF-8 at all.
 */
function hasUnusableCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true;
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = value.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return true;
      i++;
    } else if (code >= 0xdc00 && code <= 0xdfff) {
      return true;
    }
  }
  return false;
}

const ISO_8601 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|[+-]\d{2}:?\d{2})$/;

function codePointLength(value: string): number {
  let length = 0;
  for (const _ of value) length++;
  return length;
}

function checkKey(name: string, path: string, limits: TelemetryLimits) {
  // Flattening joins with '.', so a key that holds one would be ambiguous
  // ({"a.b":1} and {"a":{"b":1}} would become the same metric).
  if (name.length === 0 || name.includes('.') || hasUnusableCharacter(name)) {
    throw new Rejection('invalid_key', `invalid key ${JSON.stringify(path.slice(0, 200))}: keys must be non-empty and hold no '.', control characters or lone surrogates`);
  }
  if (path.length > limits.maxKeyLength && codePointLength(path) > limits.maxKeyLength) {
    throw new Rejection('key_too_long', `key ${JSON.stringify(path.slice(0, 64))}... is longer than ${limits.maxKeyLength} characters`);
  }
}

interface Flattened {
  numeric: Record<string, number>;
  strings: Record<string, string>;
  booleans: Record<string, boolean>;
  ignored: string[];
}

/** Sets an own property, `__proto__` too, where a plain assignment would set the prototype instead. */
function setOwn<T>(target: Record<string, T>, key: string, value: T) {
  if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

function flatten(object: Record<string, unknown>, limits: TelemetryLimits): Flattened {
  const out: Flattened = { numeric: {}, strings: {}, booleans: {}, ignored: [] };
  let fields = 0;
  const count = () => {
    if (++fields > limits.maxFields) throw new Rejection('too_many_fields', `more than ${limits.maxFields} fields`);
  };
  const walk = (node: Record<string, unknown>, prefix: string, depth: number) => {
    if (depth > limits.maxDepth) throw new Rejection('too_deep', `objects nested deeper than ${limits.maxDepth} levels`);
    for (const name of Object.keys(node)) {
      const path = prefix === '' ? name : `${prefix}.${name}`;
      checkKey(name, path, limits);
      const value = node[name];
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        const child = value as Record<string, unknown>;
        if (Object.keys(child).length === 0) {
          count();
          out.ignored.push(path);
        } else {
          walk(child, path, depth + 1);
        }
        continue;
      }
      count();
      if (typeof value === 'number') {
        // JSON has no NaN or Infinity, but a literal like 1e400 parses to
        // Infinity, which JSON.stringify would silently turn into null.
        if (Number.isFinite(value)) setOwn(out.numeric, path, value);
        else out.ignored.push(path);
      } else if (typeof value === 'string') {
        if (value.length * 3 > limits.maxStringBytes && Buffer.byteLength(value, 'utf8') > limits.maxStringBytes) {
          throw new Rejection('string_too_long', `the value of ${JSON.stringify(path)} is longer than ${limits.maxStringBytes} bytes`);
        }
        setOwn(out.strings, path, value);
      } else if (typeof value === 'boolean') {
        setOwn(out.booleans, path, value);
      } else {
        // null and arrays
        out.ignored.push(path);
      }
    }
  };
  walk(object, '', 1);
  return out;
}

function lookup(object: Record<string, unknown>, dottedPath: string): unknown {
  let node: unknown = object;
  for (const segment of dottedPath.split('.')) {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
    if (!Object.hasOwn(node, segment)) return undefined;
    node = (node as Record<string, unknown>)[segment];
  }
  return node;
}

function parseTimestamp(value: unknown, unit: 's' | 'ms' | 'iso8601'): number | undefined {
  if (unit === 'iso8601') {
    if (typeof value !== 'string') return undefined;
    // Date.parse accepts many non-ISO forms, and a time without an offset would
    // be read in the server's zone: only full ISO-8601 with a zone is taken.
    const match = ISO_8601.exec(value);
    if (!match) return undefined;
    const [, main, fraction = '', zone] = match;
    const ms = Date.parse(`${main}${fraction.slice(0, 4)}${zone}`);
    return Number.isNaN(ms) ? undefined : ms;
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) return undefined;
  return Math.round(unit === 's' ? value * 1000 : value);
}

function resolveTimestamp(
  object: Record<string, unknown>,
  input: NormalizeInput,
  limits: TelemetryLimits,
): { ms: number; source: TelemetryPoint['timestamp_source'] } {
  const extractor = input.decoder?.timestamp;
  if (!extractor) return { ms: input.receivedAtMs, source: 'received_at' };
  const ms = parseTimestamp(lookup(object, extractor.field), extractor.unit);
  const sane =
    ms !== undefined &&
    ms >= input.receivedAtMs - limits.timestampMaxAgeMs &&
    ms <= input.receivedAtMs + limits.timestampMaxAheadMs;
  return sane ? { ms, source: 'payload' } : { ms: input.receivedAtMs, source: 'received_at_fallback' };
}

/**
 * Turns one device payload into a TelemetryPoint, or says why it cannot.
 * Identity (tenant, device) is given by the caller and never read from the payload.
 */
export function normalizeTelemetry(input: NormalizeInput, limits: TelemetryLimits): NormalizeResult {
  const { payload } = input;
  if (payload.length > limits.maxPayloadBytes) {
    return { ok: false, reason: 'payload_too_large', detail: `payload of ${payload.length} bytes exceeds ${limits.maxPayloadBytes}` };
  }
  if (!isUtf8(payload)) {
    return { ok: false, reason: 'invalid_utf8', detail: 'payload is not valid UTF-8' };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch (error) {
    return { ok: false, reason: 'invalid_json', detail: error instanceof Error ? error.message.slice(0, 200) : 'not JSON' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    const kind = Array.isArray(parsed) ? 'an array' : parsed === null ? 'null' : `a ${typeof parsed}`;
    return { ok: false, reason: 'not_an_object', detail: `payload is ${kind}, not a JSON object` };
  }
  const object = parsed as Record<string, unknown>;
  let flat: Flattened;
  try {
    flat = flatten(object, limits);
  } catch (error) {
    if (error instanceof Rejection) return { ok: false, reason: error.reason, detail: error.detail };
    throw error;
  }
  const timestamp = resolveTimestamp(object, input, limits);
  const receivedAt = new Date(input.receivedAtMs).toISOString();
  return {
    ok: true,
    point: {
      schema: TELEMETRY_POINT_SCHEMA,
      tenant_id: input.tenantId,
      device_id: input.deviceId,
      protocol: 'mqtt',
      message_id: input.messageId,
      timestamp: timestamp.ms === input.receivedAtMs ? receivedAt : new Date(timestamp.ms).toISOString(),
      received_at: receivedAt,
      numeric_values: flat.numeric,
      string_values: flat.strings,
      boolean_values: flat.booleans,
      ignored_fields: flat.ignored,
      timestamp_source: timestamp.source,
    },
  };
}
