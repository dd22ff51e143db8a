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
  /** Batches sent at once; further records wait in the queue. */
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
 * never answered for a record the broker did not take. Before a batch goes
 * out, the screen drops the records already delivered (EMQX's retries).
 */
export function createProduceBatcher(options: ProduceBatcherOptions): ProduceBatcher {
  const queue: Waiting[] = [];
  let inFlightRecords = 0;
  let inFlightBatches = 0;
  let timer: NodeJS.Timeout | undefined;

  function schedule() {
    if (queue.length === 0 || inFlightBatches >= options.maxInFlightBatches) return;
    if (queue.length >= options.maxBatchSize) {
      flush();
      return;
    }
    timer ??= setTimeout(flush, options.lingerMs);
  }

  function flush() {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    while (queue.length > 0 && inFlightBatches < options.maxInFlightBatches) {
      const batch = queue.splice(0, options.maxBatchSize);
      void sendBatch(batch);
      if (queue.length < options.maxBatchSize) break;
    }
    schedule();
  }

  /** The records of the batch not delivered before; the others are answered `duplicate`. */
  async function screened(batch: Waiting[]): Promise<Waiting[]> {
    const { screen } = options;
    const keyed: Waiting[] = [];
    const keys: string[] = [];
    for (const item of batch) {
      if (item.record.dedupKey === undefined) continue;
      keyed.push(item);
      keys.push(item.record.dedupKey);
    }
    if (!screen || keys.length === 0) return batch;
    let delivered: readonly boolean[] = [];
    try {
      delivered = await screen(keys);
    } catch {
      // Not knowing means sending: a possible repeat downstream over a lost message.
    }
    const duplicates = new Set(keyed.filter((_, index) => delivered[index] === true));
    for (const item of duplicates) item.resolve('duplicate');
    return duplicates.size === 0 ? batch : batch.filter((item) => !duplicates.has(item));
  }

  async function sendBatch(batch: Waiting[]) {
    inFlightBatches++;
    inFlightRecords += batch.length;
    let fresh: Waiting[] = [];
    let startedAt = 0;
    try {
      fresh = await screened(batch);
      if (fresh.length === 0) return;
      startedAt = performance.now();
      await options.produce(groupByTopic(fresh), options.timeoutMs);
      options.observer?.batch(fresh.length, (performance.now() - startedAt) / 1000, true);
      for (const item of fresh) item.resolve('sent');
    } catch (error) {
      options.observer?.batch(fresh.length, (performance.now() - startedAt) / 1000, false);
      for (const item of fresh) item.reject(error);
    } finally {
      inFlightBatches--;
      inFlightRecords -= batch.length;
      schedule();
    }
  }

  return {
    get pending() {
      return queue.length + inFlightRecords;
    },
    send(record) {
      if (queue.length + inFlightRecords >= options.maxPending) {
        return Promise.reject(new OverloadedError(`more than ${options.maxPending} records waiting for the broker`));
      }
      return new Promise<SendOutcome>((resolve, reject) => {
        queue.push({ record, resolve, reject });
        schedule();
      });
    },
  };
}
