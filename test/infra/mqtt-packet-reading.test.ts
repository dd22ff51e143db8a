import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

// The MQTT parser (mqtt-packet) reads a packet's bytes through bl's BufferList,
// which carries this project's patch (patches/bl+6.1.6.patch): a fixed-width
// read or a string that lies within one of its buffers is read in place rather
// than from a slice made for it. These tests hold the patched reads to
// Buffer's own over every way of splitting the bytes, and the parser's
// packets to the same packets parsed whole.
const require = createRequire(import.meta.url);
type Read = (offset: number) => unknown;
type BufferList = { append(buf: Buffer): BufferList; toString(encoding?: string, start?: number, end?: number): string };
const BufferList = require('bl/BufferList') as new () => BufferList;
type Parser = { on(event: 'packet', listener: (packet: object) => void): void; on(event: 'error', listener: (error: Error) => void): void; parse(buf: Buffer): number };
const mqttPacket = require('mqtt-packet') as {
  parser(options: { protocolVersion: number }): Parser;
  generate(packet: object, options: { protocolVersion: number }): Buffer;
};

const READS = {
  readUInt8: 1,
  readInt8: 1,
  readUInt16BE: 2,
  readUInt16LE: 2,
  readInt16BE: 2,
  readUInt32BE: 4,
  readInt32LE: 4,
  readFloatBE: 4,
  readDoubleLE: 8,
  readBigUInt64BE: 8,
} as const;

/** The bytes in pieces cut at the given offsets. */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [0, ...cuts.filter((cut) => cut > 0 && cut < bytes.length).sort((a, b) => a - b), bytes.length];
  return points.slice(1).map((end, index) => bytes.subarray(points[index], end));
}

function listOf(pieces: Buffer[]): BufferList {
  const list = new BufferList();
  for (const piece of pieces) list.append(piece);
  return list;
}

function outcome(read: () => unknown): unknown {
  try {
    return read();
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? (error as Error).name;
  }
}

describe('bl BufferList reads (patched)', () => {
  it('reads every width at every offset as Buffer does, however the bytes are split', () => {
    const bytes = randomBytes(24);
    for (let trial = 0; trial < 200; trial++) {
      const cuts = Array.from({ length: trial % 6 }, () => Math.floor(Math.random() * bytes.length));
      // Empty pieces too: a list may hold them.
      const pieces = split(bytes, cuts).flatMap((piece) => (trial % 5 === 0 ? [piece, Buffer.alloc(0)] : [piece]));
      const list = listOf(pieces);
      for (const [method, width] of Object.entries(READS)) {
        for (let offset = 0; offset <= bytes.length + 1; offset++) {
          const read = (target: object) => (target as Record<string, Read>)[method]!.call(target, offset);
          const expected = offset + width <= bytes.length ? read(bytes) : 'out of range';
          const actual = outcome(() => read(list));
          if (expected === 'out of range') assert.notEqual(typeof actual, 'number', `${method}(${offset}) past the end must fail`);
          else assert.deepEqual(actual, expected, `${method}(${offset}) with pieces ${pieces.map((piece) => piece.length).join('+')}`);
        }
      }
    }
  });

  it('decodes any range as text as Buffer does, however the bytes are split', () => {
    const bytes = Buffer.from('télémétrie: 温度 21.5 °C — ok', 'utf8');
    for (let trial = 0; trial < 100; trial++) {
      const cuts = Array.from({ length: trial % 5 }, () => Math.floor(Math.random() * bytes.length));
      const list = listOf(split(bytes, cuts));
      for (let start = 0; start <= bytes.length; start++) {
        for (let end = start; end <= bytes.length; end += 3) {
          assert.equal(list.toString('utf8', start, end), bytes.toString('utf8', start, end));
          assert.equal(list.toString('hex', start, end), bytes.toString('hex', start, end));
        }
      }
      assert.equal(list.toString(), bytes.toString('utf8'));
      assert.equal(list.toString('utf8', 3), bytes.toString('utf8', 3));
    }
  });
});

describe('mqtt-packet over the patched reads', () => {
  const packets = [
    {
      cmd: 'publish',
      topic: 'devices/0b9d2f4e-6a1c-4d2b-9f1e-3c5a7b9d1e2f/telemetry',
      payload: Buffer.from(JSON.stringify({ temperature: 21.5, status: 'ok' })),
      qos: 1,
      messageId: 4242,
      dup: true,
      retain: false,
      properties: { userProperties: { message_id: 'A1B2C3', site: ['north', 'south'] }, contentType: 'application/json', messageExpiryInterval: 600 },
    },
    { cmd: 'puback', messageId: 4242, reasonCode: 0 },
    { cmd: 'pingresp' },
  ];

  it('parses packets cut at every byte as it parses them whole', () => {
    const whole = Buffer.concat(packets.map((packet) => mqttPacket.generate(packet, { protocolVersion: 5 })));
    const parseAll = (pieces: Buffer[]) => {
      const parser = mqttPacket.parser({ protocolVersion: 5 });
      const parsed: object[] = [];
      parser.on('packet', (packet) => parsed.push({ ...packet }));
      parser.on('error', (error) => assert.fail(error));
      for (const piece of pieces) parser.parse(piece);
      return parsed;
    };
    const expected = parseAll([whole]);
    assert.equal(expected.length, packets.length);
    assert.equal((expected[0] as { topic: string }).topic, packets[0]!.topic);
    for (let cut = 1; cut < whole.length; cut++) assert.deepEqual(parseAll(split(whole, [cut])), expected, `cut at ${cut}`);
    for (let trial = 0; trial < 100; trial++) {
      const cuts = Array.from({ length: 1 + (trial % 8) }, () => Math.floor(Math.random() * whole.length));
      assert.deepEqual(parseAll(split(whole, cuts)), expected, `cut at ${cuts.join(', ')}`);
    }
  });
});
