import { PartialProduceError, type KafkaRecord, type TopicRecords } from '../../infra/kafka.js';

export interface OutgoingRecord {
  topic: string;
  message: KafkaRecord;
  /** The message's key in the delivery screen: a record already delivered under it is not sent again. */
  dedupKey?: string;
}

/** What became of a record: acknowledged by the broker, or left out as already delivered. */
export type SendOutcome = 'sent' | 'duplicate';

export interface BatchObserver {
  batch(size: number, seconds: number, ok: boolean): void;
}

export interface ProduceBatcherOptions {
  /**
   * Sends the records and resolves once the broker acknowledged all of them;
   * rejects with a PartialProduceError naming the records written when only
   * some were.
   */
  produce(topicMessages: TopicRecords[], timeoutMs: number): Promise<unknown>;
  /** How long the first record of a batch waits for company. */
  lingerMs: number;
  maxBatchSize: number;
  /**
   * The most bytes of records one produce request carries, below the
   * broker's message size limit (which the records of one partition in one
   * request must not exceed); a record larger than this alone is refused.
   */
  maxBatchBytes: number;
  /**
   * Batches in flight at once, each from its lookup until its acknowledgement;
   * records arriving meanwhile gather into the next batch.
   */
  maxInFlightBatches: number;
  /** Records queued or in flight; beyond it `send` fails fast with OverloadedError. */
  maxPending: number;
  /** Bytes of records queued or in flight; beyond it `send` fails fast with OverloadedError. */
  maxPendingBytes: number;
  timeoutMs: number;
  /**
   * Tells, for the dedup keys of a batch about to be sent, which were already
   * delivered. Asked once per batch, so a batch costs one lookup rather than
   * one per record. When it fails, the whole batch is sent.
   */
  screen?: (keys: readonly string[]) => Promise<readonly boolean[]>;
  observer?: BatchObserver;
}

export interface ProduceBatcher {
  /**
   * Resolves `sent` when the broker acknowledged this record, `duplicate` when
   * the screen found it already delivered; rejects when the broker did not take it.
   */
  send(record: OutgoingRecord): Promise<SendOutcome>;
  readonly pending: number;
}

export class OverloadedError extends Error {
  override name = 'OverloadedError';
}

/** A record that no produce request may carry: larger than maxBatchBytes on its own. */
export class RecordTooLargeError extends Error {
  override name = 'RecordTooLargeError';
}

interface Waiting {
  record: OutgoingRecord;
  bytes: number;
  resolve(outcome: SendOutcome): void;
  reject(error: unknown): void;
}

/** Room a record takes in a produce request beyond its key, value and headers (Kafka's record framing, generously). */
const RECORD_OVERHEAD_BYTES = 64;

export function recordBytes(message: KafkaRecord): number {
  let bytes = RECORD_OVERHEAD_BYTES + partBytes(message.key) + partBytes(message.value);
  const headers = message.headers ?? {};
  // Counted without intermediate arrays: this runs for every record.
  for (const name of Object.keys(headers)) bytes += Buffer.byteLength(name) + partBytes(headers[name]);
  return bytes;
}

function partBytes(value: string | Buffer | null | undefined): number {
  return value === null || value === undefined ? 0 : typeof value === 'string' ? Buffer.byteLength(value) : value.length;
}

function groupByTopic(items: readonly Waiting[]): TopicRecords[] {
  const byTopic = new Map<string, KafkaRecord[]>();
  for (const { record } of items) {
    const messages = byTopic.get(record.topic);
    if (messages) messages.push(record.message);
    else byTopic.set(record.topic, [record.message]);
  }
  return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
}

/**
 * Micro-batching in front of the producer: EMQX sends one request per message,
 * and one broker round trip per request would cap throughput at the broker's
 * latency. Records arriving within `lingerMs` of each other go out in one
 * request; each caller still waits for its own acknowledgement, so a 2xx is
 * never answered for a record the broker did not take.
 *
 * A batch is in flight from its screen (the lookup that drops records already
 * delivered: EMQX's retries) until the broker acknowledged it. While
 * `maxInFlightBatches` are in flight, arriving records gather into the next
 * batch rather than starting one of their own: under load, batches grow
 * rather than multiply, and each costs one lookup, one produce request and
 * one request for the broker to handle, however many records it carries.
 *
 * A batch is also capped by bytes, so the broker never refuses a request
 * for its size (a refused request would be answered 503, and EMQX would
 * retry the same doomed batch), and the bytes waiting are bounded too, so
 * memory stays bounded under load.
 */
export function createProduceBatcher(options: ProduceBatcherOptions): ProduceBatcher {
  const queue: Waiting[] = [];
  let queuedBytes = 0;
  /** Records taken from the queue, and their bytes: being screened or produced. */
  let taken = 0;
  let takenBytes = 0;
  let inFlightBatches = 0;
  /** The oldest queued record has waited its linger. */
  let due = false;
  let timer: NodeJS.Timeout | undefined;

  function pump() {
    if (queue.length === 0) return;
    // The linger counts while batches are in flight, so records that waited
    // for a slot go as soon as one is free.
    if (!due && queue.length < options.maxBatchSize && queuedBytes < options.maxBatchBytes) {
      timer ??= setTimeout(() => {
        timer = undefined;
        due = true;
        pump();
      }, options.lingerMs);
      return;
    }
    if (inFlightBatches >= options.maxInFlightBatches) return;
    clearTimeout(timer);
    timer = undefined;
    due = false;
    void dispatch(takeBatch());
    // What is left (beyond a full batch) starts its own linger, or waits for a slot.
    pump();
  }

  /** The oldest queued records that fit in one request, by count and by bytes. */
  function takeBatch(): Waiting[] {
    let count = 0;
    let bytes = 0;
    for (const item of queue) {
      if (count === options.maxBatchSize || (count > 0 && bytes + item.bytes > options.maxBatchBytes)) break;
      count++;
      bytes += item.bytes;
    }
    queuedBytes -= bytes;
    return queue.splice(0, count);
  }

  async function dispatch(batch: Waiting[]) {
    const bytes = batch.reduce((sum, item) => sum + item.bytes, 0);
    inFlightBatches++;
    taken += batch.length;
    takenBytes += bytes;
    try {
      const unsent = await screenBatch(batch);
      if (unsent.length > 0) await produceBatch(unsent);
    } finally {
      inFlightBatches--;
      taken -= batch.length;
      takenBytes -= bytes;
      pump();
    }
  }

  /** Answers the records delivered before `duplicate`; returns the others. */
  async function screenBatch(batch: Waiting[]): Promise<Waiting[]> {
    const keyed: Waiting[] = [];
    const keys: string[] = [];
    for (const item of batch) {
      if (item.record.dedupKey === undefined) continue;
      keyed.push(item);
      keys.push(item.record.dedupKey);
    }
    let delivered: readonly boolean[] = [];
    if (options.screen && keys.length > 0) {
      try {
        delivered = await options.screen(keys);
      } catch {
        // Not knowing means sending: a possible repeat downstream over a lost message.
      }
    }
    if (!delivered.includes(true)) return batch;
    const duplicates = new Set(keyed.filter((_, index) => delivered[index] === true));
    for (const item of duplicates) item.resolve('duplicate');
    return batch.filter((item) => !duplicates.has(item));
  }

  async function produceBatch(batch: Waiting[]) {
    const startedAt = performance.now();
    try {
      await options.produce(groupByTopic(batch), options.timeoutMs);
      options.observer?.batch(batch.length, (performance.now() - startedAt) / 1000, true);
      for (const item of batch) item.resolve('sent');
    } catch (error) {
      options.observer?.batch(batch.length, (performance.now() - startedAt) / 1000, false);
      // Records the broker did take are answered as taken: a retry of them by
      // EMQX would otherwise write them twice.
      const written = error instanceof PartialProduceError ? error.written : null;
      for (const item of batch) {
        if (written?.has(item.record.message)) item.resolve('sent');
        else item.reject(error);
      }
    }
  }

  return {
    get pending() {
      return queue.length + taken;
    },
    send(record) {
      const bytes = recordBytes(record.message);
      if (bytes > options.maxBatchBytes) {
        return Promise.reject(new RecordTooLargeError(`a record of ${bytes} bytes, more than one produce request carries (${options.maxBatchBytes})`));
      }
      if (queue.length + taken >= options.maxPending || queuedBytes + takenBytes + bytes > options.maxPendingBytes) {
        return Promise.reject(new OverloadedError(`more than ${options.maxPending} records or ${options.maxPendingBytes} bytes waiting for the broker`));
      }
      return new Promise<SendOutcome>((resolve, reject) => {
        queue.push({ record, bytes, resolve, reject });
        queuedBytes += bytes;
        pump();
      });
    },
  };
}
