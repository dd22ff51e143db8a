import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

// kafkajs's record encoder carries this project's patch (patches/kafkajs+2.2.4.patch):
// unzeroed buffers, varints written in place, headers written into the record.
// These tests hold its output to the record format as the Kafka protocol defines it.
const require = createRequire(import.meta.url);
type Encoded = { buffer: Buffer };
type RecordInput = { offsetDelta?: number; timestampDelta?: number; key: string | Buffer | null; value: string | Buffer | null; headers?: Record<string, string | Buffer | (string | Buffer)[]> };
const Record = require('kafkajs/src/protocol/recordBatch/record/v0') as (input: RecordInput) => Encoded;
const Encoder = require('kafkajs/src/protocol/encoder') as { new (): Encoded & { writeVarLong(value: number): Encoded; writeVarInt(value: number): Encoded }; sizeOfVarLong(value: number): number };

/** Unsigned LEB128 of a zigzag-encoded 64-bit value (Kafka's varint and varlong). */
function varlong(value: bigint): Buffer {
  let zigzag = BigInt.asUintN(64, (value << 1n) ^ (value >> 63n));
  const bytes: number[] = [];
  while (zigzag >= 0x80n) {
    bytes.push(Number(zigzag & 0x7fn) | 0x80);
    zigzag >>= 7n;
  }
  bytes.push(Number(zigzag));
  return Buffer.from(bytes);
}

const varint = (value: number) => varlong(BigInt(value));
const bytesField = (value: string | Buffer | null) => (value === null ? varint(-1) : Buffer.concat([varint(Buffer.byteLength(value)), Buffer.from(value)]));

/** Record v2 as the protocol guide defines it, written independently of kafkajs. */
function referenceRecord({ offsetDelta = 0, timestampDelta = 0, key, value, headers = {} }: RecordInput): Buffer {
  const pairs = Object.entries(headers).flatMap(([name, values]) => (Array.isArray(values) ? values : [values]).map((one) => [name, one] as const));
  const body = Buffer.concat([
    Buffer.from([0]),
    varlong(BigInt(timestampDelta)),
    varint(offsetDelta),
    bytesField(key),
    bytesField(value),
    varint(pairs.length),
    ...pairs.flatMap(([name, one]) => [bytesField(name), bytesField(one)]),
  ]);
  return Buffer.concat([varint(body.length), body]);
}

/** Leaves Node's shared buffer pool full of non-zero bytes, as unzeroed allocations may see it. */
function dirtyThePool() {
  for (let i = 0; i < 64; i++) Buffer.allocUnsafe(256).fill(0xa5);
}

describe('Kafka record encoding (kafkajs, patched)', () => {
  it('writes records byte for byte as the protocol defines them', () => {
    const cases: RecordInput[] = [
      { key: 'device-1', value: '{"temperature":22.5}' },
      { key: null, value: null },
      { key: Buffer.from([0, 1, 2]), value: Buffer.alloc(0), offsetDelta: 0, timestampDelta: 0 },
      {
        key: '2f0c6a4e-8d1b-4c55-9a7e-3c1d2b4a5f60',
        value: JSON.stringify({ metrics: { temperature: 22.5 }, strings: { state: 'running' } }),
        offsetDelta: 22,
        headers: { tenant_id: 'acme', device_id: '2f0c6a4e-8d1b-4c55-9a7e-3c1d2b4a5f60', 'content-type': 'application/json', schema: 'telemetry_point/v1' },
      },
      { key: 'ключ', value: 'значение ✓ 🌡', headers: { 'é-header': 'ü', binary: randomBytes(40), repeated: ['one', Buffer.from('two')] } },
      // Larger than the encoder's first buffer, so it grows mid-record.
      { key: 'big', value: randomBytes(3000), offsetDelta: 300, headers: { schema: 'x'.repeat(700) } },
    ];
    for (const timestampDelta of [0, 1, -1, 63, -64, 2 ** 30 - 1, -(2 ** 30) + 1, 2 ** 30, -(2 ** 30), 2 ** 31, 1_700_000_000_000, -86_400_000_000]) {
      cases.push({ key: 'k', value: 'v', timestampDelta, offsetDelta: 5 });
    }
    for (const input of cases) {
      dirtyThePool();
      assert.deepEqual(Record(input).buffer, referenceRecord(input), JSON.stringify({ ...input, value: String(input.value).slice(0, 40) }));
    }
  });

  it('writes varints and varlongs across the whole range, and sizes varlongs to match', () => {
    const values = [0, 1, -1, 127, 128, -128, 300, 2 ** 21, 2 ** 28 + 3, 2 ** 30 - 1, 2 ** 30, 2 ** 31 - 1, -(2 ** 31), 2 ** 40 + 7, -(2 ** 45), Number.MAX_SAFE_INTEGER];
    for (const value of values) {
      dirtyThePool();
      const written = new Encoder().writeVarLong(value).buffer;
      assert.deepEqual(written, varlong(BigInt(value)), `varlong ${value}`);
      assert.equal(Encoder.sizeOfVarLong(value), written.length, `size of varlong ${value}`);
      if (value >= -(2 ** 31) && value < 2 ** 31) assert.deepEqual(new Encoder().writeVarInt(value).buffer, varint(value), `varint ${value}`);
    }
  });
});
