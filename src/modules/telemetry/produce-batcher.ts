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
  /** Produce requests outstanding at once; a screened batch waits for a free one. */
  maxInFlightBatches: number;
  /** Records queued or in flight; beyond it `send` fails fast with OverloadedError. */
  maxPending: number;
  timeoutMs: number;
  /**
   * Tells, for the dedup keys of a batch about to be sent, which were already
   * delivered. Asked once per batch, so a batch costs one lookup rather than
   * one per record, and for one batch at a time. When it fails, the whole
   * batch is sent.
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
 * A batch passes two stages: the screen drops the records already delivered
 * (EMQX's retries), then the batch is produced. One batch is screened at a
 * time, and at most one screened batch waits for a produce slot. So the next
 * batch's lookup runs while the current batch is produced instead of adding
 * to its latency, and the records arriving meanwhile gather into the batch
 * after it: under load, batches grow rather than multiply.
 */
export function createProduceBatcher(options: ProduceBatcherOptions): ProduceBatcher {
  const queue: Waiting[] = [];
  /** Records taken from the queue: being screened, screened and waiting, or in flight. */
  let taken = 0;
  let screening = false;
  let screenedBatch: Waiting[] | undefined;
  let inFlightBatches = 0;
  /** The oldest queued record has waited its linger. */
  let due = false;
  let timer: NodeJS.Timeout | undefined;

  function pump() {
    if (screenedBatch && inFlightBatches < options.maxInFlightBatches) {
      const batch = screenedBatch;
      screenedBatch = undefined;
      void produceBatch(batch);
    }
    if (queue.length === 0) return;
    if (!due && queue.length < options.maxBatchSize) {
      timer ??= setTimeout(() => {
        timer = undefined;
        due = true;
        pump();
      }, options.lingerMs);
      return;
    }
    if (screening || screenedBatch) return;
    clearTimeout(timer);
    timer = undefined;
    due = false;
    void screenBatch(queue.splice(0, options.maxBatchSize));
    // What is left (beyond a full batch) starts its own linger.
    if (queue.length > 0) pump();
  }

  /** Answers the records delivered before `duplicate` and hands the others to the produce stage. */
  async function screenBatch(batch: Waiting[]) {
    screening = true;
    taken += batch.length;
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
    const duplicates = new Set(keyed.filter((_, index) => delivered[index] === true));
    for (const item of duplicates) item.resolve('duplicate');
    taken -= duplicates.size;
    screening = false;
    if (duplicates.size < batch.length) {
      screenedBatch = duplicates.size === 0 ? batch : batch.filter((item) => !duplicates.has(item));
    }
    pump();
  }

  async function produceBatch(batch: Waiting[]) {
    inFlightBatches++;
    const startedAt = performance.now();
    try {
      await options.produce(groupByTopic(batch), options.timeoutMs);
      options.observer?.batch(batch.length, (performance.now() - startedAt) / 1000, true);
      for (const item of batch) item.resolve('sent');
    } catch (error) {
      options.observer?.batch(batch.length, (performance.now() - startedAt) / 1000, false);
      for (const item of batch) item.reject(error);
    } finally {
      inFlightBatches--;
      taken -= batch.length;
      pump();
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
