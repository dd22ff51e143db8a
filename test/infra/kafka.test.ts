import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { consumeRecords } from '../helpers/kafka.js';

describe('kafka client', () => {
  let ctx: TestContext;
  let app: FastifyInstance;

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
  });
  after(() => ctx.close());

  it('a record produced through the app client is consumed back from the broker', async () => {
    const topic = `${ctx.config.kafka.topicPrefix}roundtrip`;
    await app.infra.kafka.ensureTopics([topic], { partitions: 2, replicationFactor: 1 });
    // Creating again is harmless (topics are reconciled at every start).
    await app.infra.kafka.ensureTopics([topic], { partitions: 2, replicationFactor: 1 });
    const [metadata] = await app.infra.kafka.produce(
      [{ topic, messages: [{ key: 'device-1', value: '{"hello":"kafka"}', headers: { schema: 'test/v1' } }] }],
      5000,
    );
    assert.equal(metadata?.errorCode, 0);
    const [record] = await consumeRecords([topic], 1);
    assert.deepEqual(record && { key: record.key, value: record.value, headers: record.headers }, {
      key: 'device-1',
      value: '{"hello":"kafka"}',
      headers: { schema: 'test/v1' },
    });
  });

  it('producing to a topic that does not exist fails instead of creating it', async () => {
    await assert.rejects(
      app.infra.kafka.produce([{ topic: `${ctx.config.kafka.topicPrefix}missing`, messages: [{ value: 'x' }] }], 3000),
    );
  });
});
