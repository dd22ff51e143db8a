import { EVENT_DELIVERY } from './emqx-facts.js';
import type { EventResult, HttpAction } from './http-action.js';
import type { SimLog } from './log.js';
import type { RenderedRequest } from './templates.js';

/**
 * How far a run lets events stray from the order they were raised in, within
 * what EMQX does (EVENT_DELIVERY): by default each tick's events leave in the
 * order they were raised, all at once.
 */
export interface DeliveryPlan {
  /** A REST publish answers only once its events were delivered (`sometimes`: for half of them). */
  readonly beforeAnswer?: boolean | 'sometimes';
  /** Every event is sent twice, as the HTTP action does when it retries an attempt the service did answer. */
  readonly repeat?: boolean;
  /** Each tick's events leave in random order (an ack before its delivery). */
  readonly shuffle?: boolean;
}

/** A rule output the HTTP action sent, and how its delivery ended. */
export interface SentEvent {
  /** The request body as JSON (the rule's output: no body template). */
  readonly event: Record<string, unknown>;
  /** The last status the service answered; null when it never answered. */
  readonly status: number | null;
  readonly outcome: EventResult['outcome'];
}

export interface EventOutbox {
  /** Queues one rule output for its action; settles with how its delivery ended. */
  post(action: string, request: RenderedRequest, label: string): Promise<EventResult>;
  plan: DeliveryPlan;
  /** Whether a REST publish now waits for its events before it answers. */
  answerAfterEvents(): boolean;
  readonly sent: SentEvent[];
  /** Resolves once every event under way has been delivered or given up. */
  settle(): Promise<void>;
  /** Gives events under way `graceMs`, then stops retrying. */
  close(graceMs: number): Promise<void>;
}

interface Item {
  readonly action: HttpAction;
  readonly request: RenderedRequest;
  readonly label: string;
  readonly resolve: (result: EventResult) => void;
}

/** A seeded generator, so a shuffled run can be replayed. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function parsed(body: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(body);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : { body };
  } catch {
    return { body };
  }
}

/**
 * Collects the events raised in one turn of the event loop and hands them to
 * their HTTP actions together, in the order the plan allows; records how
 * each delivery ended.
 */
export function createEventOutbox(options: {
  actions: ReadonlyMap<string, HttpAction>;
  seed: number;
  /** Records each delivery in `sent`. */
  journal: boolean;
  log: SimLog;
}): EventOutbox {
  const random = mulberry32(options.seed);
  const stop = new AbortController();
  const pending = new Set<Promise<unknown>>();
  const sent: SentEvent[] = [];
  let batch: Item[] | null = null;

  function track<T>(promise: Promise<T>): Promise<T> {
    pending.add(promise);
    void promise.finally(() => pending.delete(promise));
    return promise;
  }

  async function send(item: Item): Promise<EventResult> {
    const result = await item.action.deliver(item.request, item.label, stop.signal);
    if (options.journal && result.outcome !== 'unsent') sent.push({ event: parsed(item.request.body), status: result.status, outcome: result.outcome });
    return result;
  }

  function flush() {
    const items = batch ?? [];
    batch = null;
    const copies = items.flatMap((item) => (outbox.plan.repeat && EVENT_DELIVERY.mayRepeat ? [item, item] : [item]));
    if (outbox.plan.shuffle && !EVENT_DELIVERY.ordered) {
      for (let i = copies.length - 1; i > 0; i -= 1) {
        const j = Math.floor(random() * (i + 1));
        [copies[i], copies[j]] = [copies[j] as Item, copies[i] as Item];
      }
    }
    const sends = new Map<Item, Promise<EventResult>[]>();
    for (const item of copies) sends.set(item, [...(sends.get(item) ?? []), track(send(item))]);
    // An item is settled once each of its copies is: the first copy's result is the item's.
    for (const [item, results] of sends) void Promise.all(results).then(([first]) => item.resolve(first as EventResult));
  }

  const outbox: EventOutbox = {
    plan: {},
    sent,
    post(name, request, label) {
      const action = options.actions.get(name);
      if (!action) {
        options.log.warn(`event ${label}: no HTTP action ${name}`);
        return Promise.resolve({ outcome: 'unsent', status: null, attempts: 0 });
      }
      if (!batch) {
        batch = [];
        queueMicrotask(flush);
      }
      const queued = batch;
      return track(new Promise<EventResult>((resolve) => queued.push({ action, request, label, resolve })));
    },
    answerAfterEvents() {
      const { beforeAnswer } = outbox.plan;
      if (!EVENT_DELIVERY.mayPrecedePublishAnswer) return false;
      return beforeAnswer === true || (beforeAnswer === 'sometimes' && random() < 0.5);
    },
    async settle() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
    async close(graceMs) {
      if (graceMs > 0) await Promise.race([outbox.settle(), new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
      stop.abort();
      await outbox.settle();
    },
  };
  return outbox;
}
