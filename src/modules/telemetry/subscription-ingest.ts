import { randomBytes } from 'node:crypto';
import type { ReceivedPublish } from '../../infra/mqtt-subscription.js';
import type { Clock } from '../../lib/clock.js';
import { Fifo } from '../../lib/fifo.js';
import type { TelemetryIngest } from './telemetry-ingest.js';
import type { TelemetryMetrics } from './telemetry-metrics.js';

export interface SubscriptionIngestOptions {
  telemetry: Pick<TelemetryIngest, 'handleSubscribed'>;
  clock: Clock;
  metrics: Pick<TelemetryMetrics, 'retried'>;
  /** Delay before retrying a message that may succeed later: first, and largest (doubling in between). */
  retryMinMs?: number;
  retryMaxMs?: number;
}

export interface SubscriptionIngest {
  /** A client (re)connected; without a session present, nothing received before will be delivered again on it. */
  connected(client: number, sessionPresent: boolean): void;
  /** A message from the subscription, to acknowledge with `ack` once it is in Kafka (or dead-lettered). */
  receive(publish: ReceivedPublish, ack: () => void): void;
  /** Messages received and not yet in Kafka. */
  readonly pending: number;
  /**
   * Waits up to `waitMs` for the messages under way (and those still
   * arriving) to reach Kafka and be acknowledged, then stops taking messages
   * and gives up retrying the rest (they stay unacknowledged with the
   * broker). True when nothing was left.
   */
  drain(waitMs: number): Promise<boolean>;
}

interface PendingAck {
  delivery: Delivery;
  settled: boolean;
  ok: boolean;
  ack: () => void;
  packetId: number;
}

interface Delivery {
  /** Settles true once the message is in Kafka or dead-lettered, false when given up at shutdown. */
  readonly done: Promise<boolean>;
  readonly topic: string;
  readonly payload: Buffer;
}

const DEFAULT_RETRY_MIN_MS = 100;
const DEFAULT_RETRY_MAX_MS = 5000;
const MAX_MESSAGE_ID_LENGTH = 256;

/**
 * Telemetry from the shared subscription, with the webhook's contract: a
 * message is acknowledged only once its TelemetryPoint (or dead letter) is in
 * Kafka. What may succeed later is retried here, in place, rather than
 * refused: MQTT has no "try again", and a message not acknowledged stays with
 * the broker, which sends no more than the Receive Maximum until some are.
 *
 * Order: a device's messages arrive in order (one subscriber per device, by
 * the broker's hash strategy) and are produced one after another — the next
 * waits until the one before is in Kafka, retries included — while different
 * devices' messages share produce batches. Acknowledgements leave in the order
 * the messages arrived on their connection, as MQTT requires.
 *
 * Repeats it can see: a message the broker sends again after a reconnection
 * (same packet id, DUP set, same topic and payload) joins the first delivery
 * instead of being produced twice, and is acknowledged as soon as that one is
 * in Kafka. A device's own `message_id` is kept out within the dedup window too.
 */
export function createSubscriptionIngest(options: SubscriptionIngestOptions): SubscriptionIngest {
  const { telemetry, clock, metrics } = options;
  const retryMinMs = options.retryMinMs ?? DEFAULT_RETRY_MIN_MS;
  const retryMaxMs = options.retryMaxMs ?? DEFAULT_RETRY_MAX_MS;
  /** The tail of each topic's chain: its last message's delivery. */
  const tails = new Map<string, Promise<void>>();
  /** Per client: deliveries not yet acknowledged, by packet id, for a redelivery to join. */
  const unacknowledged = new Map<number, Map<number, Delivery>>();
  /** Per client: the acknowledgements waiting, in arrival order. */
  const ackQueues = new Map<number, Fifo<PendingAck>>();
  let pending = 0;
  /** Taking no new messages (shutting down). */
  let closing = false;
  /** Giving up the retries of what is under way. */
  let draining = false;
  const wakeups = new Set<() => void>();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      wakeups.add(wake);
    });

  /** Produces the message, retrying whatever may succeed later until it does or the service stops. */
  async function deliver(publish: ReceivedPublish, messageId: string, deviceMessageId: boolean, receivedAtMs: number): Promise<boolean> {
    let delay = retryMinMs;
    for (;;) {
      try {
        const outcome = await telemetry.handleSubscribed({ topic: publish.topic, payload: publish.payload, messageId, deviceMessageId, receivedAtMs });
        if (outcome.kind === 'handled') return true;
      } catch {
        // An unexpected failure is retried like an outage: never acknowledged unproduced.
        metrics.retried.inc({ reason: 'handler_error' });
      }
      if (draining) return false;
      await sleep(delay);
      if (draining) return false;
      delay = Math.min(retryMaxMs, delay * 2);
    }
  }

  function start(publish: ReceivedPublish): Delivery {
    const receivedAtMs = clock();
    const own = publish.messageIdProperty !== null && publish.messageIdProperty.length <= MAX_MESSAGE_ID_LENGTH ? publish.messageIdProperty : null;
    const messageId = own ?? randomBytes(16).toString('hex').toUpperCase();
    // One chain per topic, so per device (a device's telemetry has one topic): its messages reach Kafka in arrival order.
    const chain = publish.topic;
    const before = tails.get(chain);
    pending++;
    // A device with nothing under way starts at once; otherwise after the message before.
    const done = before
      ? before.then(() => deliver(publish, messageId, own !== null, receivedAtMs))
      : deliver(publish, messageId, own !== null, receivedAtMs);
    // `deliver` never rejects: what fails is retried in place, or given up (false) when draining.
    const tail = done.then(() => {
      pending--;
      if (tails.get(chain) === tail) tails.delete(chain);
    });
    tails.set(chain, tail);
    return { done, topic: publish.topic, payload: publish.payload };
  }

  /** Sends the acknowledgements at the head of a client's queue that are due: in arrival order. */
  function flush(client: number) {
    const queue = ackQueues.get(client);
    if (!queue) return;
    for (let head = queue.peek(); head?.settled; head = queue.peek()) {
      queue.shift();
      if (head.ok) {
        head.ack();
        const held = unacknowledged.get(client);
        if (held?.get(head.packetId) === head.delivery) held.delete(head.packetId);
      }
    }
  }

  return {
    connected(client, sessionPresent) {
      // Acknowledgements of the previous connection can no longer be sent.
      ackQueues.set(client, new Fifo());
      // Without its session the broker will not send those packets again: nothing to join.
      if (!sessionPresent) unacknowledged.delete(client);
    },
    receive(publish, ack) {
      if (closing) return;
      let held = unacknowledged.get(publish.client);
      if (!held) unacknowledged.set(publish.client, (held = new Map()));
      const earlier = held.get(publish.packetId);
      const delivery =
        publish.dup && earlier && earlier.topic === publish.topic && earlier.payload.equals(publish.payload) ? earlier : start(publish);
      held.set(publish.packetId, delivery);
      let queue = ackQueues.get(publish.client);
      if (!queue) ackQueues.set(publish.client, (queue = new Fifo()));
      const entry: PendingAck = { delivery, settled: false, ok: false, ack, packetId: publish.packetId };
      queue.push(entry);
      void delivery.done.then((ok) => {
        entry.settled = true;
        entry.ok = ok;
        flush(publish.client);
      });
    },
    get pending() {
      return pending;
    },
    async drain(waitMs) {
      const deadline = clock() + waitMs;
      while (pending > 0 && clock() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      closing = true;
      const clean = pending === 0;
      draining = true;
      for (const wake of [...wakeups]) wake();
      await Promise.allSettled([...tails.values()]);
      return clean;
    },
  };
}
