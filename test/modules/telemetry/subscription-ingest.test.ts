import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ReceivedPublish } from '../../../src/infra/mqtt-subscription.js';
import { HANDLED, type EventOutcome } from '../../../src/lib/emqx-event.js';
import type { SubscribedMessage } from '../../../src/modules/telemetry/telemetry-ingest.js';
import { createSubscriptionIngest, type SubscriptionIngestOptions } from '../../../src/modules/telemetry/subscription-ingest.js';

// The order and acknowledgement rules of ingest by subscription, on a handler
// whose every call the test answers by hand (the Kafka side is covered
// against real brokers in telemetry-subscription*.test.ts).

interface Call {
  message: SubscribedMessage;
  answer(outcome: EventOutcome): void;
}

function harness() {
  const calls: Call[] = [];
  const acks: string[] = [];
  let retried = 0;
  const ingest = createSubscriptionIngest({
    telemetry: {
      handleSubscribed: (message) => new Promise<EventOutcome>((resolve) => calls.push({ message, answer: resolve })),
    },
    clock: Date.now,
    metrics: { retried: { inc: () => void retried++ } } as unknown as SubscriptionIngestOptions['metrics'],
    retryMinMs: 5,
    retryMaxMs: 20,
  });
  const publish = (client: number, packetId: number, device: string, payload: string, dup = false): ReceivedPublish => ({
    client,
    topic: `devices/${device}/telemetry`,
    payload: Buffer.from(payload),
    packetId,
    dup,
    messageIdProperty: `${device}-${payload}`,
  });
  /** Receives a message whose acknowledgement is recorded as `{client}:{packetId}`. */
  const receive = (message: ReceivedPublish) => ingest.receive(message, () => acks.push(`${message.client}:${message.packetId}`));
  const handled = () => calls.map((call) => call.message.payload.toString());
  return { ingest, calls, acks, handled, publish, receive, retried: () => retried };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('ingest by subscription: order and acknowledgements', () => {
  it('produces a device’s messages one after another, other devices’ alongside', async () => {
    const { calls, handled, publish, receive } = harness();
    receive(publish(0, 1, 'a', 'a1'));
    receive(publish(0, 2, 'a', 'a2'));
    receive(publish(0, 3, 'b', 'b1'));
    receive(publish(0, 4, 'a', 'a3'));
    await turn();
    assert.deepEqual(handled(), ['a1', 'b1'], 'the second of a device waits for its first');
    calls[1]!.answer(HANDLED);
    await turn();
    assert.deepEqual(handled(), ['a1', 'b1']);
    calls[0]!.answer(HANDLED);
    await turn();
    assert.deepEqual(handled(), ['a1', 'b1', 'a2']);
    calls[2]!.answer(HANDLED);
    await turn();
    assert.deepEqual(handled(), ['a1', 'b1', 'a2', 'a3']);
  });

  it('acknowledges in arrival order, whichever message reaches Kafka first', async () => {
    const { ingest, calls, acks, publish, receive } = harness();
    receive(publish(0, 1, 'a', 'a1'));
    receive(publish(0, 2, 'b', 'b1'));
    receive(publish(0, 3, 'c', 'c1'));
    await turn();
    calls[2]!.answer(HANDLED);
    calls[1]!.answer(HANDLED);
    await turn();
    assert.deepEqual(acks, [], 'nothing before the first is acknowledged');
    assert.equal(ingest.pending, 1);
    calls[0]!.answer(HANDLED);
    await turn();
    assert.deepEqual(acks, ['0:1', '0:2', '0:3']);
    assert.equal(ingest.pending, 0);
  });

  it('retries what may succeed later in place, the device’s next message still behind it', async () => {
    const { calls, acks, handled, publish, receive, retried } = harness();
    receive(publish(0, 1, 'a', 'a1'));
    receive(publish(0, 2, 'a', 'a2'));
    await turn();
    calls[0]!.answer({ kind: 'retry', reason: 'kafka_unavailable' });
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.deepEqual(handled(), ['a1', 'a1'], 'the first again, not the second');
    assert.equal(retried(), 0, 'an answer to retry is counted by the handler, not here');
    calls[1]!.answer(HANDLED);
    await turn();
    assert.deepEqual(handled(), ['a1', 'a1', 'a2']);
    calls[2]!.answer(HANDLED);
    await turn();
    assert.deepEqual(acks, ['0:1', '0:2']);
  });

  it('joins a redelivery to the first delivery under way: produced once, acknowledged on the new connection', async () => {
    const { ingest, calls, acks, handled, publish, receive } = harness();
    receive(publish(0, 7, 'a', 'a1'));
    await turn();
    // The connection drops; the broker resumes the session and sends the packet again.
    ingest.connected(0, true);
    receive(publish(0, 7, 'a', 'a1', true));
    await turn();
    assert.deepEqual(handled(), ['a1']);
    calls[0]!.answer(HANDLED);
    await turn();
    assert.deepEqual(handled(), ['a1']);
    assert.deepEqual(acks, ['0:7'], 'one acknowledgement: the old connection’s is not sent');
  });

  it('acknowledges a redelivery of a message already in Kafka without producing it again', async () => {
    const { ingest, calls, acks, handled, publish, receive } = harness();
    receive(publish(0, 1, 'a', 'a1'));
    receive(publish(0, 2, 'b', 'b1'));
    await turn();
    // b1 reaches Kafka, but its acknowledgement waits behind a1's when the connection drops.
    calls[1]!.answer(HANDLED);
    await turn();
    ingest.connected(0, true);
    receive(publish(0, 1, 'a', 'a1', true));
    receive(publish(0, 2, 'b', 'b1', true));
    await turn();
    assert.deepEqual(handled(), ['a1', 'b1']);
    assert.deepEqual(acks, [], 'b1 waits behind the redelivered a1');
    calls[0]!.answer(HANDLED);
    await turn();
    assert.deepEqual(acks, ['0:1', '0:2']);
    assert.equal(ingest.pending, 0);
  });

  it('produces a packet id again when it comes with another payload, or after a session was lost', async () => {
    const { ingest, calls, handled, publish, receive } = harness();
    receive(publish(0, 1, 'a', 'a1'));
    await turn();
    ingest.connected(0, true);
    receive(publish(0, 1, 'a', 'other', true));
    ingest.connected(0, false);
    receive(publish(0, 1, 'a', 'a1', true));
    for (const call of calls) call.answer(HANDLED);
    await turn();
    for (const call of calls.slice(1)) call.answer(HANDLED);
    await turn();
    assert.deepEqual(handled(), ['a1', 'other', 'a1']);
  });

  it('drains: waits for what is under way, then gives up retries and takes nothing more', async () => {
    const { ingest, calls, acks, handled, publish, receive } = harness();
    receive(publish(0, 1, 'a', 'a1'));
    receive(publish(0, 2, 'b', 'b1'));
    await turn();
    calls[0]!.answer(HANDLED);
    calls[1]!.answer({ kind: 'retry', reason: 'kafka_unavailable' });
    const draining = ingest.drain(50);
    await new Promise((resolve) => setTimeout(resolve, 80));
    // Kafka is still down: b1's attempt under way fails too, and is not tried again.
    for (const call of calls.slice(2)) call.answer({ kind: 'retry', reason: 'kafka_unavailable' });
    assert.equal(await draining, false, 'b1 was still under way');
    const attempts = calls.length;
    await new Promise((resolve) => setTimeout(resolve, 40));
    assert.equal(calls.length, attempts, 'no retry after the drain');
    assert.deepEqual(acks, ['0:1'], 'what was given up stays unacknowledged with the broker');
    receive(publish(0, 3, 'c', 'c1'));
    await turn();
    assert.equal(handled().includes('c1'), false);
  });
});
