import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { Partitioners, type PartitionMetadata } from 'kafkajs';
import { JavaCompatiblePartitioner, murmur2 } from '../../src/infra/kafka-partitioner.js';

const metadata = (count: number): PartitionMetadata[] =>
  Array.from({ length: count }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 }));

describe('Java-compatible partitioner', () => {
  it("matches Kafka's murmur2 for the Java client's test vectors", () => {
    // The Java client's own test vectors (UtilsTest.testMurmur2).
    const cases: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, expected] of cases) assert.equal(murmur2(Buffer.from(key)), expected, key);
  });

  it("chooses kafkajs's DefaultPartitioner's partition for every key", () => {
    const ours = JavaCompatiblePartitioner();
    const theirs = Partitioners.DefaultPartitioner();
    const keys: (string | Buffer)[] = [
      '',
      'a',
      'ab',
      'abc',
      'grüße-🌡️',
      ...Array.from({ length: 500 }, () => randomUUID()),
      ...Array.from({ length: 200 }, (_, i) => randomBytes(i % 40)),
    ];
    for (const count of [1, 2, 3, 6, 7, 12, 64]) {
      const partitionMetadata = metadata(count);
      for (const key of keys) {
        const args = { topic: 't', partitionMetadata, message: { key, value: 'v' } };
        assert.equal(ours(args), theirs(args), `key ${String(key)} over ${count} partitions`);
      }
    }
  });

  it('keeps an explicit partition, and spreads records without a key', () => {
    const partition = JavaCompatiblePartitioner();
    const partitionMetadata = metadata(4);
    assert.equal(partition({ topic: 't', partitionMetadata, message: { key: 'k', value: 'v', partition: 3 } }), 3);
    const spread = new Set(Array.from({ length: 8 }, () => partition({ topic: 't', partitionMetadata, message: { key: null, value: 'v' } })));
    assert.equal(spread.size, 4);
  });
});
