import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Consumer } from 'kafkajs';
import { createPeriodic } from '../lib/periodic.js';
import { withTimeout } from '../lib/with-timeout.js';
import { createKafkaJs, type KafkaConnection } from './kafka.js';

export interface ConsumedRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

export interface TopicConsumerOptions extends KafkaConnection {
  /** Shared by every replica: each partition is consumed by one of them. */
  groupId: string;
  /** The topics to consume: every existing topic this accepts, looked up at start, on refresh() and every refreshIntervalMs. */
  accepts(topic: string): boolean;
  /**
   * Handles one record. A rejection is retried with backoff (heartbeating
   * meanwhile) until it resolves; the record's offset is committed only
   * after that, so a crash loses nothing.
   */
  handle(record: ConsumedRecord): Promise<void>;
  refreshIntervalMs: number;
  partitionsConsumedConcurrently?: number;
  log: {
    warn(object: object, message: string): void;
    info(object: object, message: string): void;
    debug(object: object, message: string): void;
  };
}

export interface TopicConsumer {
  /** Starts in the background: a Kafka outage must not hold the service's start-up. */
  start(): void;
  /** Looks for new topics now (a tenant was created here). */
  refresh(): void;
  /** Leaves the group; a record being handled is not committed and goes to another member. */
  stop(): Promise<void>;
}

const RETRY_DELAYS_MS = [200, 500, 1000, 2000, 5000];

/**
 * A consumer group member over a set of topics that grows: kafkajs resolves a
 * subscription once, when the consumer starts, so topics created afterwards
 * (a new tenant's) are found by listing the topics again, and the consumer
 * is restarted with them — which makes the group rebalance.
 */
export function createTopicConsumer(options: TopicConsumerOptions): TopicConsumer {
  const { log } = options;
  const kafka = createKafkaJs(options, log);
  const consumer: Consumer = kafka.consumer({
    groupId: options.groupId,
    allowAutoTopicCreation: false,
    retry: { initialRetryTime: 300, maxRetryTime: 5000, retries: 8 },
  });
  const admin: Admin = kafka.admin();
  const subscribed = new Set<string>();
  let connected = false;
  let running = false;
  let stopped = false;
  let failing = false;

  // A consumer that crashed for good is started again by the next refresh.
  consumer.on(consumer.events.CRASH, (event) => {
    if (!event.payload.restart) {
      running = false;
      connected = false;
    }
  });

  async function handleWithRetries(record: ConsumedRecord, heartbeat: () => Promise<void>) {
    for (let attempt = 0; ; attempt++) {
      try {
        await options.handle(record);
        if (failing) log.info({ groupId: options.groupId }, 'consumed records are handled again');
        failing = false;
        return;
      } catch (error) {
        if (stopped) throw error;
        if (!failing) {
          log.warn({ groupId: options.groupId, topic: record.topic, err: (error as Error).message }, 'a consumed record could not be handled; retrying');
        }
        failing = true;
        await sleep(RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]);
        // Throws while the group rebalances: the record then goes to its next owner uncommitted.
        await heartbeat();
      }
    }
  }

  async function refreshOnce() {
    if (stopped) return;
    await withTimeout(admin.connect(), 10_000, 'kafka admin connect');
    const added = (await admin.listTopics()).filter((topic) => options.accepts(topic) && !subscribed.has(topic));
    if (added.length === 0 && (running || subscribed.size === 0)) return;
    if (running) {
      await consumer.stop();
      running = false;
    }
    if (!connected) {
      await consumer.connect();
      connected = true;
    }
    if (added.length > 0) {
      // From the beginning only when the group has no committed offset for a topic (a new tenant's first requests).
      await consumer.subscribe({ topics: added, fromBeginning: true });
      for (const topic of added) subscribed.add(topic);
    }
    if (stopped) return;
    await consumer.run({
      partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 1,
      eachMessage: ({ topic, partition, message, heartbeat }) =>
        handleWithRetries({ topic, partition, offset: message.offset, key: message.key, value: message.value }, heartbeat),
    });
    running = true;
  }

  // Also every refreshIntervalMs: topics created on another replica.
  const refreshing = createPeriodic(`(re)subscribing kafka consumer group ${options.groupId}`, refreshOnce, options.refreshIntervalMs, log);

  function refresh() {
    // A failure is logged by the periodic runner and retried every interval.
    refreshing.runNow().catch(() => undefined);
  }

  return {
    start() {
      refreshing.start();
      refresh();
    },
    refresh,
    async stop() {
      stopped = true;
      // A broker that does not answer must not hold the shutdown for long: a
      // refresh still connecting is left behind, and leaving the group is bounded.
      await Promise.race([refreshing.stop(), sleep(1000)]);
      await withTimeout(Promise.allSettled([consumer.disconnect(), admin.disconnect()]), 3000, 'kafka consumer disconnect').catch(() => undefined);
    },
  };
}
