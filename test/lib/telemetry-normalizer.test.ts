import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DecoderConfig } from '../../src/lib/decoder-config.js';
import { normalizeTelemetry, type NormalizeResult, type TelemetryLimits } from '../../src/lib/telemetry-normalizer.js';

const limits: TelemetryLimits = {
  maxPayloadBytes: 256 * 1024,
  maxFields: 1000,
  maxKeyLength: 128,
  maxStringBytes: 4096,
  maxDepth: 8,
  timestampMaxAgeMs: 365 * 86_400_000,
  timestampMaxAheadMs: 300_000,
};

const RECEIVED_AT = Date.parse('2026-11-24T16:18:29.123Z');

function normalize(payload: string | Buffer, decoder: DecoderConfig | null = null, overrides: Partial<TelemetryLimits> = {}): NormalizeResult {
  return normalizeTelemetry(
    {
      payload: typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload,
      tenantId: 'acme',
      deviceId: '6f1c7c1e-8d0b-4c1e-9a57-0c7a3b9d2f10',
      messageId: '0005F8A1B2C3D4E5F6A7B8C9D0E1F2A3',
      receivedAtMs: RECEIVED_AT,
      decoder,
    },
    { ...limits, ...overrides },
  );
}

function point(payload: string, decoder: DecoderConfig | null = null) {
  const result = normalize(payload, decoder);
  assert.ok(result.ok, JSON.stringify(result));
  return result.point;
}

function rejection(payload: string | Buffer, overrides: Partial<TelemetryLimits> = {}) {
  const result = normalize(payload, null, overrides);
  assert.equal(result.ok, false, 'expected a rejection');
  return result.ok ? undefined : result.reason;
}

describe('normalizeTelemetry', () => {
  it("turns the product page's example into a whole TelemetryPoint v1", () => {
    assert.deepEqual(point('{"temperature":22.5,"humidity":65,"state":"running"}'), {
      schema: 'telemetry_point/v1',
      tenant_id: 'acme',
      device_id: '6f1c7c1e-8d0b-4c1e-9a57-0c7a3b9d2f10',
      protocol: 'mqtt',
      message_id: '0005F8A1B2C3D4E5F6A7B8C9D0E1F2A3',
      timestamp: '2026-11-24T16:18:29.123Z',
      received_at: '2026-11-24T16:18:29.123Z',
      numeric_values: { temperature: 22.5, humidity: 65 },
      string_values: { state: 'running' },
      boolean_values: {},
      ignored_fields: [],
      timestamp_source: 'received_at',
    });
  });

  it('flattens nested objects with "." and names null, arrays, empty objects and non-finite numbers as ignored', () => {
    const result = point('{"a":{"b":{"c":1,"d":"x"},"e":true},"n":null,"list":[1,2],"empty":{},"huge":1e400,"ok":false}');
    assert.deepEqual(
      {
        numeric: result.numeric_values,
        strings: result.string_values,
        booleans: result.boolean_values,
        ignored: result.ignored_fields,
      },
      {
        numeric: { 'a.b.c': 1 },
        strings: { 'a.b.d': 'x' },
        booleans: { 'a.e': true, ok: false },
        ignored: ['n', 'list', 'empty', 'huge'],
      },
    );
  });

  it('keeps unicode keys and a metric named __proto__ as ordinary metrics', () => {
    const result = point('{"température":21,"__proto__":{"x":1},"状態":"ok"}');
    assert.deepEqual(JSON.parse(JSON.stringify(result.numeric_values)), { température: 21, '__proto__.x': 1 });
    assert.deepEqual(result.string_values, { 状態: 'ok' });
    // At the top level too, of each kind: an own property, not the object's prototype.
    for (const [payload, values] of [
      ['{"__proto__":5}', 'numeric_values'],
      ['{"__proto__":"on"}', 'string_values'],
      ['{"__proto__":true}', 'boolean_values'],
    ] as const) {
      const held = point(payload)[values];
      assert.equal(Object.getPrototypeOf(held), Object.prototype, payload);
      assert.ok(Object.hasOwn(held, '__proto__'), payload);
      assert.equal(JSON.stringify(held), `{"__proto__":${payload.slice('{"__proto__":'.length, -1)}}`);
    }
  });

  it('rejects each kind of poison with its reason', () => {
    assert.equal(rejection('{"temperature":'), 'invalid_json');
    assert.equal(rejection(''), 'invalid_json');
    assert.equal(rejection('[1,2,3]'), 'not_an_object');
    assert.equal(rejection('42'), 'not_an_object');
    assert.equal(rejection('"text"'), 'not_an_object');
    assert.equal(rejection('null'), 'not_an_object');
    assert.equal(rejection(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), 'invalid_utf8');
    assert.equal(rejection(`{"a":"${'x'.repeat(300 * 1024)}"}`), 'payload_too_large');
    assert.equal(rejection(JSON.stringify(Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`f${i}`, i])))), 'too_many_fields');
    assert.equal(rejection(`${'{"a":'.repeat(9)}1${'}'.repeat(9)}`), 'too_deep');
    assert.equal(rejection(`{"${'k'.repeat(129)}":1}`), 'key_too_long');
    assert.equal(rejection(`{"${'a'.repeat(100)}":{"${'b'.repeat(40)}":1}}`), 'key_too_long');
    assert.equal(rejection('{"temp.°C":1}'), 'invalid_key');
    assert.equal(rejection('{"":1}'), 'invalid_key');
    assert.equal(rejection('{"a\\u0000b":1}'), 'invalid_key');
    assert.equal(rejection('{"a\\ud800":1}'), 'invalid_key');
    assert.equal(rejection(`{"s":"${'é'.repeat(2049)}"}`), 'string_too_long');
  });

  it('accepts values right at the limits', () => {
    assert.ok(normalize(`${'{"a":'.repeat(8)}1${'}'.repeat(8)}`).ok);
    assert.ok(normalize(`{"${'k'.repeat(128)}":1}`).ok);
    assert.ok(normalize(`{"${'é'.repeat(128)}":1}`).ok, '128 characters, 256 bytes');
    assert.ok(normalize(`{"s":"${'é'.repeat(2048)}"}`).ok);
    assert.ok(normalize(JSON.stringify(Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`f${i}`, i])))).ok);
  });

  it('extracts the timestamp in seconds, milliseconds and ISO-8601, from a dotted path', () => {
    const at = '2026-11-24T16:00:00.500Z';
    const ms = Date.parse(at);
    const cases: [string, DecoderConfig][] = [
      [`{"ts":${ms / 1000}}`, { type: 'json', timestamp: { field: 'ts', unit: 's' } }],
      [`{"ts":${ms}}`, { type: 'json', timestamp: { field: 'ts', unit: 'ms' } }],
      ['{"meta":{"time":"2026-11-24T17:00:00.5+01:00"}}', { type: 'json', timestamp: { field: 'meta.time', unit: 'iso8601' } }],
      ['{"t":"2026-11-24T16:00:00.500123Z"}', { type: 'json', timestamp: { field: 't', unit: 'iso8601' } }],
    ];
    for (const [payload, decoder] of cases) {
      const result = point(payload, decoder);
      assert.deepEqual([result.timestamp, result.timestamp_source, result.received_at], [at, 'payload', '2026-11-24T16:18:29.123Z'], payload);
    }
  });

  it('falls back to the arrival time, flagged, for missing, malformed or absurd timestamps', () => {
    const seconds: DecoderConfig = { type: 'json', timestamp: { field: 'ts', unit: 's' } };
    const iso: DecoderConfig = { type: 'json', timestamp: { field: 'ts', unit: 'iso8601' } };
    const cases: [string, DecoderConfig][] = [
      ['{"v":1}', seconds],
      ['{"ts":"1700000000"}', seconds],
      ['{"ts":0}', seconds],
      [`{"ts":${RECEIVED_AT / 1000 + 3600}}`, seconds],
      [`{"ts":${RECEIVED_AT}}`, seconds],
      ['{"ts":"2026-11-24 16:00:00"}', iso],
      ['{"ts":"2026-11-24T16:00:00"}', iso],
      ['{"ts":"March 7, 2026"}', iso],
      ['{"ts":"2026-13-45T99:00:00Z"}', iso],
      ['{"ts":1764000000}', iso],
    ];
    for (const [payload, decoder] of cases) {
      const result = point(payload, decoder);
      assert.deepEqual([result.timestamp, result.timestamp_source], ['2026-11-24T16:18:29.123Z', 'received_at_fallback'], payload);
    }
  });

  it('keeps the timestamp field among the values', () => {
    const result = point(`{"ts":${RECEIVED_AT},"v":1}`, { type: 'json', timestamp: { field: 'ts', unit: 'ms' } });
    assert.deepEqual(result.numeric_values, { ts: RECEIVED_AT, v: 1 });
  });
});
