import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

// kafkajs's record encoder carries this project's patch (patches/kafkajs+2.2.4.patch):
// unzeroed buffers, varints written in place, headers written into the record, and
// each batch's CRC-32C computed eight bytes at a time. These tests hold its output
// to the record format and the checksum as the Kafka protocol defines them.
const require = createRequire(import.meta.url);
type Encoded = { buffer: Buffer };
type RecordInput = { offsetDelta?: number; timestampDelta?: number; key: string | Buffer | null; value: string | Buffer | null; headers?: Record<string, string | Buffer | (string | Buffer)[]> };
const Record = require('kafkajs/src/protocol/recordBatch/record/v0') as (input: RecordInput) => Encoded;
const crc32C = require('kafkajs/src/protocol/recordBatch/crc32C') as (bytes: Buffer) => number;
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0') as { RecordBatch: (input: { records: Encoded[] }) => Promise<Encoded> };
const Encoder = require('kafkajs/src/protocol/encoder') as { new (): Encoded & { writeVarLong(value: number): Encoded; writeVarInt(value: number): Encoded }; sizeOfVarLong(value: number): number };

/** CRC-32C as its definition gives it: bit by bit, reflected, polynomial 0x82F63B78. */
function referenceCrc32c(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

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

  it('checksums record batches with CRC-32C, whatever their length and alignment', () => {
    assert.equal(crc32C(Buffer.from('123456789')), 0xe3069283, 'the CRC-32C check value');
    const bytes = randomBytes(4099);
    for (let length = 0; length <= 67; length++) assert.equal(crc32C(bytes.subarray(0, length)), referenceCrc32c(bytes.subarray(0, length)), `${length} bytes`);
    for (const offset of [1, 3, 5, 7]) assert.equal(crc32C(bytes.subarray(offset)), referenceCrc32c(bytes.subarray(offset)), `offset ${offset}`);
    assert.equal(crc32C(Buffer.alloc(1000, 0xff)), referenceCrc32c(Buffer.alloc(1000, 0xff)), 'every bit set');
  });

  it("writes each batch's CRC over the bytes after its CRC field", async () => {
    const records = Array.from({ length: 40 }, (_, offsetDelta) => Record({ offsetDelta, key: randomBytes(16), value: randomBytes(300), headers: { schema: 'telemetry_point/v1' } }));
    const batch = (await RecordBatch({ records })).buffer;
    // First offset (8), length (4), partition leader epoch (4), magic (1), then the CRC (4) of everything after it.
    assert.equal(batch.readUInt32BE(17), referenceCrc32c(batch.subarray(21)));
  });
});
