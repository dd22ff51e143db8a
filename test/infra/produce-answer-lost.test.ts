import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createKafka, type KafkaClient } from '../../src/infra/kafka.js';
import { createKafkaAnswerDropper, type KafkaAnswerDropper } from '../helpers/kafka-answer-dropper.js';
import { silentLog } from '../helpers/context.js';
import { consumeRecords, createTopics } from '../helpers/kafka.js';
import { TEST_KAFKA_BROKERS } from '../helpers/env.js';

/**
 * A broker that wrote a request and died before answering leaves the producer
 * not knowing. Kafka's idempotence drops a repeat by producer id and sequence
 * number alone, so a request that reuses that sequence for other records is
 * acknowledged without being written. These run against the plaintext broker:
 * the relay reads Kafka's framing.
 */
describe('kafka produce when an answer is lost', () => {
  let dropper: KafkaAnswerDropper;
  let kafka: KafkaClient;

  before(async () => {
    dropper = await createKafkaAnswerDropper(TEST_KAFKA_BROKERS.split(',')[0] ?? '');
    kafka = createKafka(
      { brokers: [TEST_KAFKA_BROKERS.split(',')[0] ?? ''], clientId: 'dlm-test-lost-answers', producerPoolSize: 1, socketFactory: dropper.socketFactory },
      silentLog,
    );
  });
  after(async () => {
    await kafka.close();
    await dropper.close();
  });

  async function freshTopic() {
    const topic = `dlm-test-lost-answers-${randomUUID()}`;
    await createTopics([topic]);
    // The producer has its id and has written to the partition before the answer is lost.
    await kafka.produce([{ topic, messages: [{ key: 'device', value: 'warm-up' }] }], 10_000);
    return topic;
  }

  async function valuesOn(topic: string, expected: readonly string[]) {
    const records = await consumeRecords([topic], 0, {
      timeoutMs: 15_000,
      settleMs: 1500,
      until: (() => {
        const missing = new Set(expected);
        return (record) => (missing.delete(record.value ?? ''), missing.size === 0);
      })(),
    });
    return records.map((record) => record.value).filter((value) => value !== 'warm-up');
  }

  it('a send after one that failed with its records written is written too, and the failed one once', async () => {
    const topic = await freshTopic();
    dropper.dropProduceAnswers(1000);
    await assert.rejects(kafka.produce([{ topic, messages: [{ key: 'device', value: 'answer-lost' }] }], 20_000));
    assert.ok(dropper.dropped > 0);
    dropper.dropProduceAnswers(0);
    await kafka.produce([{ topic, messages: [{ key: 'device', value: 'after-it' }] }], 10_000);
    assert.deepEqual((await valuesOn(topic, ['answer-lost', 'after-it'])).sort(), ['after-it', 'answer-lost']);
  });

  it('sends made while a lost answer is retried are each written once', async () => {
    const topic = await freshTopic();
    const before = dropper.dropped;
    dropper.dropProduceAnswers(1);
    const values = Array.from({ length: 6 }, (_, n) => `concurrent-${n}`);
    await Promise.all(values.map((value) => kafka.produce([{ topic, messages: [{ key: 'device', value }] }], 20_000)));
    assert.equal(dropper.dropped, before + 1);
    assert.deepEqual((await valuesOn(topic, values)).sort(), values);
  });
});
