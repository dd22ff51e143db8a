import { setTimeout as sleep } from 'node:timers/promises';
import {
  Kafka,
  logLevel as KafkaLogLevel,
  type Admin,
  type ITopicConfig,
  type KafkaConfig,
  type LogEntry,
  type Producer,
  type SASLOptions,
  type RecordMetadata,
} from 'kafkajs';
import { JavaCompatiblePartitioner, murmur2 } from './kafka-partitioner.js';
import { createDependencyState, type DependencyLogger, type DependencyState } from '../lib/dependency-state.js';
import { TimeoutError, withTimeout } from '../lib/with-timeout.js';

export type RecordHeaders = Record<string, string | Buffer>;

/** One record to produce; without a partition, the key's murmur2 chooses it as the Java client would. */
export interface KafkaRecord {
  key?: string | Buffer | null;
  value: string | Buffer | null;
  headers?: RecordHeaders;
  partition?: number;
}

export interface TopicRecords {
  topic: string;
  messages: KafkaRecord[];
}

/** Where the broker wrote the first record of a partition's share of a request. */
export interface WrittenPartition {
  topic: string;
  partition: number;
  baseOffset: string;
}

/** Some records of a produce request were written and the others were not. */
export class PartialProduceError extends Error {
  override name = 'PartialProduceError';
  constructor(
    /** The records (as given to produce) the broker acknowledged. */
    readonly written: ReadonlySet<KafkaRecord>,
    cause: unknown,
  ) {
    super(`kafka produce: ${written.size} records written, the others failed`, { cause });
  }
}

export interface KafkaLogger extends DependencyLogger {
  debug(object: object, message: string): void;
}

export interface KafkaClient {
  readonly state: DependencyState;
  /**
   * Sends records and resolves once every in-sync replica has them (acks=all).
   * Rejects when the broker cannot be reached or does not acknowledge in time,
   * with a PartialProduceError when some partitions' records were written.
   */
  produce(topicMessages: TopicRecords[], timeoutMs: number): Promise<WrittenPartition[]>;
  /** Creates the topics that do not exist yet; existing ones are left alone. */
  ensureTopics(topics: readonly string[], options: { partitions: number; replicationFactor: number }): Promise<void>;
  ping(timeoutMs: number): Promise<void>;
  /** Disconnects the producer and the admin client (waiting at most 5 s for a hung broker). */
  close(): Promise<void>;
}

/** Where the brokers are and how to reach them: what every kafkajs client of the service is made from. */
export interface KafkaConnection {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly sasl?: { readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; readonly username: string; readonly password: string } | null;
  /** TLS to the brokers: the CA to trust (PEM; the system's when absent), and a client certificate and key for mutual TLS. */
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string } | null;
  /** Opens the connections to the brokers in place of kafkajs's own (a relay in between, in tests). */
  readonly socketFactory?: KafkaConfig['socketFactory'];
}

export interface KafkaOptions extends KafkaConnection {
  /** Idempotent producers sending side by side (default 4). */
  producerPoolSize?: number;
}

/** Memoized connect that is retried after a failure or a disconnect. */
function createConnector(connect: () => Promise<void>) {
  let connecting: Promise<void> | undefined;
  return {
    ensure(): Promise<void> {
      connecting ??= connect().catch((error: unknown) => {
        connecting = undefined;
        throw error;
      });
      return connecting;
    },
    reset() {
      connecting = undefined;
    },
  };
}

/** Protocol errors a broker answers for a topic it created but whose metadata has not caught up yet. */
const NOT_YET = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

/** The protocol error type of a kafkajs error, looking through the errors kafkajs wraps it in. */
function protocolErrorType(error: unknown): string | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    const { type } = current as { type?: unknown };
    if (typeof type === 'string') return type;
  }
  return undefined;
}

/**
 * Waits until every partition of the topics has a leader, up to `deadline`
 * (performance.now()). kafkajs's own waitForLeaders gives up on
 * UNKNOWN_TOPIC_OR_PARTITION, which a broker answers for a topic it has just
 * created until its metadata caught up.
 */
export async function untilTopicsLed(admin: Pick<Admin, 'fetchTopicMetadata'>, topics: string[], deadline: number): Promise<void> {
  for (;;) {
    try {
      const { topics: described } = await admin.fetchTopicMetadata({ topics });
      if (described.every(({ partitions }) => partitions.length > 0 && partitions.every(({ leader }) => leader >= 0))) return;
    } catch (error) {
      if (!NOT_YET.has(protocolErrorType(error) ?? '')) throw error;
    }
    if (performance.now() > deadline) throw new Error(`kafka topics without leaders: ${topics.join(', ')}`);
    await sleep(100);
  }
}

/** Why Kafka cannot be reached, in words an operator can act on (never a credential). */
export type KafkaFailureCause =
  | 'authentication_failed'
  | 'tls_untrusted_certificate'
  | 'tls_handshake_failed'
  | 'connection_closed'
  | 'unreachable'
  | 'timeout'
  | 'unavailable';

/** Certificate checks that fail because the broker's certificate is not trusted (Node's TLS error codes). */
const UNTRUSTED_CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);

/** The cause of a failure to reach Kafka, looking through the errors kafkajs wraps it in. */
export function kafkaFailureCause(error: unknown): KafkaFailureCause {
  for (let current = error, depth = 0; current instanceof Error && depth < 6; current = current.cause ?? (current as { originalError?: unknown }).originalError, depth++) {
    const code = (current as { code?: unknown }).code;
    if (current.name === 'KafkaJSSASLAuthenticationError') return 'authentication_failed';
    if (typeof code === 'string' && UNTRUSTED_CERTIFICATE.has(code)) return 'tls_untrusted_certificate';
    if (typeof code === 'string' && code.startsWith('ERR_SSL')) return 'tls_handshake_failed';
    if (typeof code === 'string' && UNREACHABLE.has(code)) return 'unreachable';
    if (current.name === 'KafkaJSConnectionClosedError') return 'connection_closed';
    if (current.name === 'TimeoutError' || current.name === 'KafkaJSRequestTimeoutError') return 'timeout';
  }
  return 'unavailable';
}

/** kafkajs's SASL options, whose type is one union member per mechanism. */
function saslOptions(sasl: NonNullable<KafkaConnection['sasl']>): SASLOptions {
  const { username, password } = sasl;
  if (sasl.mechanism === 'plain') return { mechanism: 'plain', username, password };
  return sasl.mechanism === 'scram-sha-256' ? { mechanism: 'scram-sha-256', username, password } : { mechanism: 'scram-sha-512', username, password };
}

/** kafkajs's TLS and SASL settings for a connection (none for plaintext). */
export function kafkaJsSecurity({ sasl, tls }: Pick<KafkaConnection, 'sasl' | 'tls'>): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  return {
    ...(tls ? { ssl: { rejectUnauthorized: true, ...(tls.ca ? { ca: [tls.ca] } : {}), ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}) } } : {}),
    ...(sasl ? { sasl: saslOptions(sasl) } : {}),
  };
}

/**
 * The kafkajs client both the producer side and the consumers use. kafkajs
 * logs every retry, so its lines go to `debug`: outages are reported once by
 * whoever uses it (the dependency state, the consumer's own warnings).
 */
export function createKafkaJs(options: KafkaConnection, logger: Pick<KafkaLogger, 'debug'>): Kafka {
  return new Kafka({
    clientId: options.clientId,
    brokers: [...options.brokers],
    ...kafkaJsSecurity(options),
    ...(options.socketFactory ? { socketFactory: options.socketFactory } : {}),
    connectionTimeout: 1000,
    // Longer than the broker-side topic-creation timeout; produce and ping are
    // bounded by their own deadlines.
    requestTimeout: 15_000,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 3 },
    logLevel: KafkaLogLevel.WARN,
    logCreator: () => (entry: LogEntry) =>
      logger.debug({ kafkajs: entry.namespace, ...entry.log }, entry.log.message ?? 'kafkajs'),
  });
}

interface PooledProducer {
  producer: Producer;
  connection: ReturnType<typeof createConnector>;
}

/**
 * Idempotent producers, each lent to one send at a time. The broker drops a
 * repeated request by producer id and sequence number alone, without looking
 * at the records, and kafkajs takes a failed request's sequence numbers back
 * for the next request. So a request the broker wrote but whose answer was
 * lost (a broker dying mid-answer, a timeout) has its sequence numbers reused:
 * by kafkajs's own retry of the same records, which is what idempotence is
 * for, or by other records sent meanwhile on the same producer, which the
 * broker would acknowledge and never write. Hence one send per producer at a
 * time, and a producer whose send failed is replaced by a new one (a new
 * producer id) once that send has settled: records it may have written and
 * that are sent again appear twice downstream, never none.
 */
function createProducerPool(size: number, create: () => PooledProducer) {
  const idle = Array.from({ length: size }, create);
  const waiting: Array<(pooled: PooledProducer) => void> = [];
  const live = new Set(idle);
  const release = (pooled: PooledProducer) => {
    const next = waiting.shift();
    if (next) next(pooled);
    else idle.push(pooled);
  };
  return {
    /** A producer no other send is using; rejects when none is free within `timeoutMs`. */
    acquire(timeoutMs: number): Promise<PooledProducer> {
      const free = idle.pop();
      if (free) return Promise.resolve(free);
      return new Promise((resolve, reject) => {
        const take = (pooled: PooledProducer) => {
          clearTimeout(timer);
          resolve(pooled);
        };
        const timer = setTimeout(() => {
          waiting.splice(waiting.indexOf(take), 1);
          reject(new TimeoutError(`kafka produce waited ${timeoutMs} ms for a free producer`));
        }, timeoutMs);
        waiting.push(take);
      });
    },
    release,
    /** Lends a new producer in place of one whose send failed; the old one is disconnected once that send has settled. */
    replace(pooled: PooledProducer, send: Promise<unknown>) {
      void send
        .catch(() => undefined)
        .then(() => pooled.producer.disconnect())
        .catch(() => undefined)
        .finally(() => live.delete(pooled));
      const fresh = create();
      live.add(fresh);
      release(fresh);
    },
    close: () => Promise.allSettled([...live].map(({ producer }) => producer.disconnect())),
  };
}

export function createKafka(options: KafkaOptions, logger: KafkaLogger): KafkaClient {
  const state = createDependencyState('kafka', logger);
  const kafka = createKafkaJs(options, logger);
  const producers = createProducerPool(options.producerPoolSize ?? 4, () => {
    const producer: Producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
      // Bounded: the callers' deadlines answer first, and a send must not keep
      // retrying in the background forever while the broker is down.
      retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 5 },
      createPartitioner: JavaCompatiblePartitioner,
    });
    const connection = createConnector(() => producer.connect());
    producer.on(producer.events.DISCONNECT, () => connection.reset());
    return { producer, connection };
  });
  const admin: Admin = kafka.admin();
  const adminConnection = createConnector(() => admin.connect());
  admin.on(admin.events.DISCONNECT, () => adminConnection.reset());
  let closing = false;

  /** Partitions per topic, as the broker has them; null when the topic cannot be described. */
  async function partitionCount(topic: string): Promise<number | null> {
    try {
      await adminConnection.ensure();
      const { topics: [described] = [] } = await admin.fetchTopicMetadata({ topics: [topic] });
      return described?.partitions.length || null;
    } catch {
      return null;
    }
  }

  /** The records grouped by the partition the partitioner gives them, each with that partition set. */
  async function byPartition(topicMessages: TopicRecords[]): Promise<{ group: TopicRecords; originals: KafkaRecord[] }[]> {
    const groups: { group: TopicRecords; originals: KafkaRecord[] }[] = [];
    for (const { topic, messages } of topicMessages) {
      const partitions = await partitionCount(topic);
      if (partitions === null) {
        groups.push({ group: { topic, messages }, originals: messages });
        continue;
      }
      const byNumber = new Map<number, { group: TopicRecords; originals: KafkaRecord[] }>();
      for (const message of messages) {
        const { key } = message;
        // The producer's own choice (JavaCompatiblePartitioner), made here so a group is one partition.
        const partition =
          message.partition ?? (key === null || key === undefined ? 0 : (murmur2(typeof key === 'string' ? Buffer.from(key) : key) & 0x7fffffff) % partitions);
        let entry = byNumber.get(partition);
        if (!entry) byNumber.set(partition, (entry = { group: { topic, messages: [] }, originals: [] }));
        entry.group.messages.push({ ...message, partition });
        entry.originals.push(message);
      }
      groups.push(...byNumber.values());
    }
    return groups;
  }

  /**
   * One request for all the records; when it fails and holds the records of
   * several partitions, each partition's records are sent again on their
   * own, on the same producer. The broker applies each partition of a request
   * separately, so some may have been written; the producer is idempotent and
   * sends them again under the same sequence numbers, which the broker
   * acknowledges without writing a second copy. What failed then fails alone,
   * and the records written are reported as written (PartialProduceError).
   */
  async function sendSplittingOnFailure(producer: Producer, topicMessages: TopicRecords[], timeoutMs: number): Promise<RecordMetadata[]> {
    try {
      return await producer.sendBatch({ topicMessages, acks: -1, timeout: timeoutMs });
    } catch (error) {
      if (closing) throw error;
      const groups = await byPartition(topicMessages);
      if (groups.length < 2) throw error;
      const written = new Set<KafkaRecord>();
      const metadata: RecordMetadata[] = [];
      let failure: unknown;
      // One at a time: an idempotent producer keeps one request in flight anyway.
      for (const { group, originals } of groups) {
        try {
          metadata.push(...(await producer.sendBatch({ topicMessages: [group], acks: -1, timeout: timeoutMs })));
          for (const message of originals) written.add(message);
        } catch (groupError) {
          failure ??= groupError;
        }
      }
      if (failure === undefined) return metadata;
      if (written.size === 0) throw error;
      throw new PartialProduceError(written, failure);
    }
  }

  async function tracked<T>(work: () => Promise<T>, context: object): Promise<T> {
    try {
      const result = await work();
      state.up();
      return result;
    } catch (error) {
      state.down(error, { ...context, cause: kafkaFailureCause(error) });
      throw error;
    }
  }

  return {
    state,
    produce(topicMessages, timeoutMs) {
      if (closing) return Promise.reject(new Error('kafka producer is closing'));
      return tracked(async () => {
        const deadline = performance.now() + timeoutMs;
        const pooled = await producers.acquire(timeoutMs);
        const send = pooled.connection.ensure().then(() => sendSplittingOnFailure(pooled.producer, topicMessages, timeoutMs));
        let metadata: RecordMetadata[];
        try {
          metadata = await withTimeout(send, Math.max(0, deadline - performance.now()), 'kafka produce');
        } catch (error) {
          producers.replace(pooled, send);
          throw error;
        }
        producers.release(pooled);
        return metadata.map(({ topicName, partition, baseOffset }) => ({ topic: topicName, partition, baseOffset: baseOffset ?? '' }));
      }, { operation: 'produce' });
    },
    async ensureTopics(topics, { partitions, replicationFactor }) {
      if (topics.length === 0) return;
      await tracked(() => withTimeout(createMissing(), 20_000, 'kafka create topics'), { operation: 'create topics' });
      async function createMissing() {
        await adminConnection.ensure();
        const existing = new Set(await admin.listTopics());
        const missing: ITopicConfig[] = topics
          .filter((topic) => !existing.has(topic))
          .map((topic) => ({ topic, numPartitions: partitions, replicationFactor }));
        if (missing.length === 0) return;
        // createTopics tolerates topics that another replica created meanwhile.
        await admin.createTopics({ topics: missing, waitForLeaders: false, timeout: 10_000 });
        await untilTopicsLed(admin, missing.map(({ topic }) => topic), performance.now() + 15_000);
      }
    },
    ping(timeoutMs) {
      return tracked(
        () =>
          withTimeout(
            adminConnection.ensure().then(() => admin.describeCluster()),
            timeoutMs,
            'kafka ping',
          ).then(() => undefined),
        { operation: 'ping' },
      );
    },
    async close() {
      closing = true;
      // Sends awaited by callers have settled before this runs; what is left is
      // at most a request to an unresponsive broker, not worth the whole
      // shutdown deadline.
      await withTimeout(
        Promise.allSettled([producers.close(), admin.disconnect()]),
        5000,
        'kafka disconnect',
      ).catch(() => undefined);
    },
  };
}
