import { Kafka, logLevel, type IHeaders } from 'kafkajs';
import { untilTopicsLed } from '../../src/infra/kafka.js';
import { TEST_KAFKA_BROKERS, testKafkaSecurity } from './env.js';

export interface ConsumedRecord {
  topic: string;
  partition: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
}

/** A kafkajs client of the tests, with the shared broker's security when it is that broker. */
export function testKafka(clientId: string, brokers = TEST_KAFKA_BROKERS): Kafka {
  return new Kafka({ clientId, brokers: brokers.split(','), logLevel: logLevel.NOTHING, ...testKafkaSecurity(brokers) });
}

function headersToStrings(headers: IHeaders | undefined): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value !== undefined) result[name] = Array.isArray(value) ? value.map(String).join(',') : String(value);
  }
  return result;
}

/**
 * Reads topics from the beginning until `count` records arrived (or the time is
 * up) and returns them; the caller asserts on what a downstream consumer sees.
 * With `until`, told of each record, reading ends once it answers true
 * instead: when every record expected was seen, duplicates counted or not.
 */
export async function consumeRecords(
  topics: string[],
  count: number,
  {
    brokers = TEST_KAFKA_BROKERS,
    timeoutMs = 20_000,
    settleMs = 0,
    until,
  }: { brokers?: string; timeoutMs?: number; settleMs?: number; until?: (record: ConsumedRecord) => boolean } = {},
): Promise<ConsumedRecord[]> {
  const kafka = testKafka('dlm-test-consumer', brokers);
  const consumer = kafka.consumer({ groupId: `dlm-test-${Date.now()}-${Math.random().toString(36).slice(2)}` });
  const records: ConsumedRecord[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics, fromBeginning: true });
    await new Promise<void>((resolve) => {
      let settleTimer: NodeJS.Timeout | undefined;
      const timer = setTimeout(resolve, timeoutMs);
      let done = false;
      const finishWhenDone = (record: ConsumedRecord) => {
        done ||= until ? until(record) : records.length >= count;
        if (!done) return;
        clearTimeout(timer);
        // settleMs > 0 keeps reading a little longer so extra (duplicate) records show up.
        if (settleMs === 0) resolve();
        else settleTimer ??= setTimeout(resolve, settleMs);
      };
      void consumer.run({
        eachMessage: async ({ topic, partition, message }) => {
          const record: ConsumedRecord = {
            topic,
            partition,
            key: message.key?.toString() ?? null,
            value: message.value?.toString() ?? null,
            headers: headersToStrings(message.headers),
          };
          records.push(record);
          finishWhenDone(record);
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return records;
}

/** Creates topics (if missing) the way the registry does when it creates a tenant. */
export async function createTopics(topics: string[], brokers = TEST_KAFKA_BROKERS): Promise<void> {
  const kafka = testKafka('dlm-test-admin', brokers);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((topic) => !existing.has(topic));
    if (missing.length === 0) return;
    // Not kafkajs's waitForLeaders, which gives up while a new topic's metadata catches up: the service's own wait.
    await admin.createTopics({ topics: missing.map((topic) => ({ topic, numPartitions: 1 })), waitForLeaders: false });
    await untilTopicsLed(admin, missing, performance.now() + 15_000);
  } finally {
    await admin.disconnect();
  }
}

/** Waits until every topic exists (the app creates some in the background at start-up). */
export async function waitForTopics(topics: readonly string[], { brokers = TEST_KAFKA_BROKERS, timeoutMs = 20_000 } = {}): Promise<void> {
  const kafka = testKafka('dlm-test-admin', brokers);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const existing = new Set(await admin.listTopics());
      const missing = topics.filter((topic) => !existing.has(topic));
      if (missing.length === 0) return;
      if (Date.now() > deadline) throw new Error(`topics still missing after ${timeoutMs} ms: ${missing.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await admin.disconnect();
  }
}

/** Writes records as another service would (acks from all in-sync replicas). */
export async function produceRecords(
  topic: string,
  messages: Array<{ key?: string | null; value: string | Buffer }>,
  brokers = TEST_KAFKA_BROKERS,
): Promise<void> {
  const kafka = testKafka('dlm-test-producer', brokers);
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: messages.map((message) => ({ key: message.key ?? null, value: message.value })) });
  } finally {
    await producer.disconnect();
  }
}

/** Topics the broker has, with their partition counts. */
export async function describeTopics(brokers = TEST_KAFKA_BROKERS): Promise<Map<string, number>> {
  const kafka = testKafka('dlm-test-admin', brokers);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata();
    return new Map(topics.map(({ name, partitions }) => [name, partitions.length]));
  } finally {
    await admin.disconnect();
  }
}
