import type { Message, TopicMessages } from 'kafkajs';

export interface OutgoingRecord {
  topic: string;
  message: Message;
  /** The message's key in the delivery screen: a record already delivered under it is not sent again. */
  dedupKey?: string;
}

/** What became of a record: acknowledged by the broker, or left out as already delivered. */
export type SendOutcome = 'sent' | 'duplicate';

export interface BatchObserver {
  batch(size: number, seconds: number, ok: boolean): void;
}

export interface ProduceBatcherOptions {
  /** Sends the records and resolves once the broker acknowledged all of them. */
  produce(topicMessages: TopicMessages[], timeoutMs: number): Promise<unknown>;
  /** How long the first record of a batch waits for company. */
  lingerMs: number;
  maxBatchSize: number;
  /**
   * Batches in flight at once, each from its lookup until its acknowledgement;
   * records arriving meanwhile gather into the next batch.
   */
  maxInFlightBatches: number;
  /** Records queued or in flight; beyond it `send` fails fast with OverloadedError. */
  maxPending: number;
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

interface Waiting {
  record: OutgoingRecord;
  resolve(outcome: SendOutcome): void;
  reject(error: unknown): void;
}

function groupByTopic(items: readonly Waiting[]): TopicMessages[] {
  const byTopic = new Map<string, Message[]>();
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
 */
export function createProduceBatcher(options: ProduceBatcherOptions): ProduceBatcher {
  const queue: Waiting[] = [];
  /** Records taken from the queue: being screened or produced. */
  let taken = 0;
  let inFlightBatches = 0;
  /** The oldest queued record has waited its linger. */
  let due = false;
  let timer: NodeJS.Timeout | undefined;

  function pump() {
    if (queue.length === 0) return;
    // The linger counts while batches are in flight, so records that waited
    // for a slot go as soon as one is free.
    if (!due && queue.length < options.maxBatchSize) {
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
    void dispatch(queue.splice(0, options.maxBatchSize));
    // What is left (beyond a full batch) starts its own linger, or waits for a slot.
    pump();
  }

  async function dispatch(batch: Waiting[]) {
    inFlightBatches++;
    taken += batch.length;
    try {
      const unsent = await screenBatch(batch);
      if (unsent.length > 0) await produceBatch(unsent);
    } finally {
      inFlightBatches--;
      taken -= batch.length;
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
      for (const item of batch) item.reject(error);
    }
  }

  return {
    get pending() {
      return queue.length + taken;
    },
    send(record) {
      if (queue.length + taken >= options.maxPending) {
        return Promise.reject(new OverloadedError(`more than ${options.maxPending} records waiting for the broker`));
      }
      return new Promise<SendOutcome>((resolve, reject) => {
        queue.push({ record, resolve, reject });
        pump();
      });
    },
  };
}
