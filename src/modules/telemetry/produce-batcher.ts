import type { Message, TopicMessages } from 'kafkajs';

export interface OutgoingRecord {
  topic: string;
  message: Message;
}

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
  observer?: BatchObserver;
}

export interface ProduceBatcher {
  /** Resolves when the broker acknowledged this record; rejects when it did not. */
  send(record: OutgoingRecord): Promise<void>;
  readonly pending: number;
}

export class OverloadedError extends Error {
  override name = 'OverloadedError';
}

interface Waiting {
  record: OutgoingRecord;
  resolve(): void;
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

  async function sendBatch(batch: Waiting[]) {
    inFlightBatches++;
    inFlightRecords += batch.length;
    const startedAt = performance.now();
    try {
      await options.produce(groupByTopic(batch), options.timeoutMs);
      options.observer?.batch(batch.length, (performance.now() - startedAt) / 1000, true);
      for (const item of batch) item.resolve();
    } catch (error) {
      options.observer?.batch(batch.length, (performance.now() - startedAt) / 1000, false);
      for (const item of batch) item.reject(error);
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
      return new Promise<void>((resolve, reject) => {
        queue.push({ record, resolve, reject });
        schedule();
      });
    },
  };
}
