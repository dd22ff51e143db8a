import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Infra } from '../../src/infra/index.js';
import { PartialProduceError } from '../../src/infra/kafka.js';
import { murmur2 } from '../../src/infra/kafka-partitioner.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { consumeRecords } from '../helpers/kafka.js';

describe('kafka client', () => {
  let ctx: TestContext;
  let infra: Infra;

  before(async () => {
    ctx = await createTestContext();
    infra = ctx.infra();
  });
  after(() => ctx.close());

  it("a record produced through the service's client is consumed back from the broker", async () => {
    const topic = `${ctx.config.kafka.topicPrefix}roundtrip`;
    await infra.kafka.ensureTopics([topic], { partitions: 2, replicationFactor: 1 });
    // Creating again is harmless (topics are reconciled at every start).
    await infra.kafka.ensureTopics([topic], { partitions: 2, replicationFactor: 1 });
    const [metadata] = await infra.kafka.produce(
      [{ topic, messages: [{ key: 'device-1', value: '{"hello":"kafka"}', headers: { schema: 'test/v1' } }] }],
      5000,
    );
    assert.equal(metadata?.topic, topic);
    const [record] = await consumeRecords([topic], 1);
    assert.deepEqual(record && { key: record.key, value: record.value, headers: record.headers }, {
      key: 'device-1',
      value: '{"hello":"kafka"}',
      headers: { schema: 'test/v1' },
    });
  });

  it('producing to a topic that does not exist fails instead of creating it', async () => {
    await assert.rejects(
      infra.kafka.produce([{ topic: `${ctx.config.kafka.topicPrefix}missing`, messages: [{ value: 'x' }] }], 3000),
    );
  });

  it('reports, for a request whose partitions fail apart, the records written as written when others failed, and writes them once', async () => {
    const topic = `${ctx.config.kafka.topicPrefix}partly`;
    await infra.kafka.ensureTopics([topic], { partitions: 2, replicationFactor: 1 });
    const written = [1, 2, 3].map((n) => ({ key: `device-${n}`, value: `written-${n}` }));
    const refused = [{ key: 'device-9', value: 'to a topic that does not exist' }];
    const error = await infra.kafka
      .produce([{ topic, messages: written }, { topic: `${ctx.config.kafka.topicPrefix}absent`, messages: refused }], 8000)
      .then(() => null, (failure: unknown) => failure);
    assert.ok(error instanceof PartialProduceError, String(error));
    assert.deepEqual(new Set(error.written), new Set(written));
    const records = await consumeRecords([topic], 3, { settleMs: 1500 });
    assert.deepEqual(records.map((record) => record.value).sort(), ['written-1', 'written-2', 'written-3']);
  });

  it("writes a keyed record to the partition Kafka's Java client chooses for its key", async () => {
    const topic = `${ctx.config.kafka.topicPrefix}partitioned`;
    await infra.kafka.ensureTopics([topic], { partitions: 6, replicationFactor: 1 });
    const keys = ['21', 'foobar', 'abc', 'grüße-🌡️', ...Array.from({ length: 60 }, (_, i) => `device-${i}-${i * 7919}`)];
    await infra.kafka.produce([{ topic, messages: keys.map((key) => ({ key, value: key })) }], 5000);
    const records = await consumeRecords([topic], keys.length);
    assert.equal(records.length, keys.length);
    for (const record of records) {
      assert.equal(record.partition, (murmur2(Buffer.from(record.key ?? '')) & 0x7fffffff) % 6, `key ${record.key}`);
    }
  });
});
