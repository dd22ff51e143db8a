import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PartialProduceError, type TopicRecords } from '../../../src/infra/kafka.js';
import {
  createProduceBatcher,
  OverloadedError,
  recordBytes,
  RecordTooLargeError,
  type ProduceBatcherOptions,
} from '../../../src/modules/telemetry/produce-batcher.js';

function recorder() {
  const calls: TopicRecords[][] = [];
  const gates: { release(): void; fail(error: Error): void }[] = [];
  const produce = (topicMessages: TopicRecords[]) => {
    calls.push(topicMessages);
    return new Promise<void>((resolve, reject) => gates.push({ release: resolve, fail: reject }));
  };
  return { calls, gates, produce };
}

const base = { lingerMs: 2, maxBatchSize: 100, maxBatchBytes: 1024 * 1024, maxInFlightBatches: 2, maxPending: 1000, maxPendingBytes: 64 * 1024 * 1024, timeoutMs: 1000 };
const tick = (ms = 10) => new Promise((resolve) => setTimeout(resolve, ms));
const record = (topic: string, n: number) => ({ topic, message: { key: `k${n}`, value: `v${n}` } });

describe('produce batcher', () => {
  it('sends records arriving together in one request, grouped by topic, and resolves each after the ack', async () => {
    const { calls, gates, produce } = recorder();
    const batcher = createProduceBatcher({ ...base, produce } satisfies ProduceBatcherOptions);
    let settled = 0;
    const sends = [record('a', 1), record('b', 2), record('a', 3)].map((r) => batcher.send(r).then(() => settled++));
    await tick();
    assert.equal(calls.length, 1);
    assert.deepEqual(calls[0]?.map((t) => [t.topic, t.messages.map((m) => m.key)]), [['a', ['k1', 'k3']], ['b', ['k2']]]);
    assert.equal(settled, 0, 'nobody is answered before the broker acknowledged');
    gates[0]?.release();
    await Promise.all(sends);
    assert.equal(settled, 3);
  });

  it('caps the batch size and rejects every record of a failed batch', async () => {
    const { calls, gates, produce } = recorder();
    const batcher = createProduceBatcher({ ...base, maxBatchSize: 2, produce });
    const sends = [1, 2, 3].map((n) => batcher.send(record('a', n)).then(() => 'ok', (error: Error) => error.message));
    await tick();
    assert.deepEqual(calls.map((c) => c[0]?.messages.length), [2, 1]);
    gates[0]?.fail(new Error('broker down'));
    gates[1]?.release();
    assert.deepEqual(await Promise.all(sends), ['broker down', 'broker down', 'ok']);
  });

  it('counts a record by the UTF-8 bytes of its key, value and headers, over a fixed framing', () => {
    const framing = recordBytes({ key: null, value: null });
    assert.equal(recordBytes({ key: 'k', value: Buffer.alloc(10) }), framing + 1 + 10);
    // "é" is two bytes; a header's name counts as well as its value.
    assert.equal(recordBytes({ value: 'é', headers: { ab: 'cd', raw: Buffer.alloc(3) } }), framing + 2 + (2 + 2) + (3 + 3));
  });

  it('caps a batch by bytes, and refuses a record larger than any batch may be', async () => {
    const { calls, gates, produce } = recorder();
    const big = (n: number) => ({ topic: 'a', message: { key: `k${n}`, value: 'x'.repeat(300) } });
    const size = recordBytes(big(1).message);
    const batcher = createProduceBatcher({ ...base, maxBatchBytes: 2 * size + 10, produce });
    await assert.rejects(batcher.send({ topic: 'a', message: { key: 'huge', value: 'x'.repeat(3 * size) } }), RecordTooLargeError);
    const sends = [1, 2, 3, 4, 5].map((n) => batcher.send(big(n)));
    await tick();
    assert.deepEqual(calls.map((c) => c[0]?.messages.length), [2, 2]);
    for (const gate of gates.splice(0)) gate.release();
    await tick();
    assert.deepEqual(calls.map((c) => c[0]?.messages.length), [2, 2, 1]);
    for (const gate of gates.splice(0)) gate.release();
    await Promise.all(sends);
  });

  it('answers the records a partly failed request wrote as sent, and only the others as failed', async () => {
    const { gates, produce, calls } = recorder();
    const batcher = createProduceBatcher({ ...base, produce });
    const sends = [record('a', 1), record('b', 2), record('a', 3)].map((r) => batcher.send(r).then(() => 'sent', () => 'failed'));
    await tick();
    const writtenA = new Set(calls[0]?.filter((t) => t.topic === 'a').flatMap((t) => t.messages));
    gates[0]?.fail(new PartialProduceError(writtenA, new Error('topic b refused')));
    assert.deepEqual(await Promise.all(sends), ['sent', 'failed', 'sent']);
  });

  it('fails fast with OverloadedError when too many bytes are waiting', async () => {
    const { gates, produce } = recorder();
    const one = recordBytes(record('a', 1).message);
    const batcher = createProduceBatcher({ ...base, maxPendingBytes: 2 * one, produce });
    const first = [batcher.send(record('a', 1)), batcher.send(record('a', 2))];
    await assert.rejects(batcher.send(record('a', 3)), OverloadedError);
    await tick();
    gates[0]?.release();
    await Promise.all(first);
    assert.ok(batcher.send(record('a', 4)));
    await tick();
    gates[1]?.release();
  });

  it('fails fast with OverloadedError when too many records are waiting', async () => {
    const { gates, produce } = recorder();
    const batcher = createProduceBatcher({ ...base, maxPending: 2, produce });
    const first = [batcher.send(record('a', 1)), batcher.send(record('a', 2))];
    await assert.rejects(batcher.send(record('a', 3)), OverloadedError);
    await tick();
    gates[0]?.release();
    await Promise.all(first);
    assert.equal(batcher.pending, 0);
  });

  it('holds records while the in-flight limit is reached and sends them when a batch completes', async () => {
    const { calls, gates, produce } = recorder();
    const batcher = createProduceBatcher({ ...base, maxInFlightBatches: 1, produce });
    const first = batcher.send(record('a', 1));
    await tick();
    const second = batcher.send(record('a', 2));
    await tick();
    assert.equal(calls.length, 1);
    gates[0]?.release();
    await first;
    await tick();
    assert.equal(calls.length, 2);
    gates[1]?.release();
    await second;
  });

  it('screens a batch once before sending: records already delivered are answered duplicate and not sent', async () => {
    const { calls, gates, produce } = recorder();
    const screened: string[][] = [];
    const delivered = new Set(['m2']);
    const screen = async (keys: readonly string[]) => {
      screened.push([...keys]);
      return keys.map((key) => delivered.has(key));
    };
    const batcher = createProduceBatcher({ ...base, produce, screen });
    const sends = [
      batcher.send({ ...record('a', 1), dedupKey: 'm1' }),
      batcher.send({ ...record('a', 2), dedupKey: 'm2' }),
      batcher.send(record('a', 3)),
    ];
    await tick();
    assert.deepEqual(screened, [['m1', 'm2']], 'one lookup for the batch, records without a key not asked about');
    assert.deepEqual(calls[0]?.[0]?.messages.map((m) => m.key), ['k1', 'k3']);
    gates[0]?.release();
    assert.deepEqual(await Promise.all(sends), ['sent', 'duplicate', 'sent']);
    assert.equal(batcher.pending, 0);
  });

  it('sends nothing for a batch of duplicates, and sends everything when the screen cannot tell', async () => {
    const { calls, gates, produce } = recorder();
    let failing = false;
    const screen = async (keys: readonly string[]) => {
      if (failing) throw new Error('redis down');
      return keys.map(() => true);
    };
    const batcher = createProduceBatcher({ ...base, produce, screen });
    assert.equal(await batcher.send({ ...record('a', 1), dedupKey: 'm1' }), 'duplicate');
    assert.equal(calls.length, 0);
    failing = true;
    const send = batcher.send({ ...record('a', 1), dedupKey: 'm1' });
    await tick();
    assert.equal(calls.length, 1);
    gates[0]?.release();
    assert.equal(await send, 'sent');
  });

  it('keeps a batch in flight from its lookup to its acknowledgement: records arriving meanwhile form the next batch', async () => {
    const { calls, gates, produce } = recorder();
    const lookups: { keys: string[]; answer(): void }[] = [];
    const screen = (keys: readonly string[]) =>
      new Promise<readonly boolean[]>((resolve) => lookups.push({ keys: [...keys], answer: () => resolve(keys.map(() => false)) }));
    const batcher = createProduceBatcher({ ...base, maxInFlightBatches: 1, produce, screen });
    const sends = [batcher.send({ ...record('a', 1), dedupKey: 'm1' })];
    await tick();
    sends.push(batcher.send({ ...record('a', 2), dedupKey: 'm2' }));
    await tick();
    assert.deepEqual(lookups.map((l) => l.keys), [['m1']], 'no second lookup while the first batch is being looked up');
    lookups[0]?.answer();
    await tick();
    sends.push(batcher.send({ ...record('a', 3), dedupKey: 'm3' }));
    await tick();
    assert.deepEqual(calls.map((c) => c[0]?.messages.map((m) => m.key)), [['k1']]);
    assert.deepEqual(lookups.map((l) => l.keys), [['m1']], 'no second lookup while the first batch is being produced');
    assert.equal(batcher.pending, 3);
    gates[0]?.release();
    await tick();
    assert.deepEqual(lookups.map((l) => l.keys), [['m1'], ['m2', 'm3']], 'everything that waited goes in one batch');
    lookups[1]?.answer();
    await tick();
    assert.deepEqual(calls.map((c) => c[0]?.messages.map((m) => m.key)), [['k1'], ['k2', 'k3']]);
    gates[1]?.release();
    assert.deepEqual(await Promise.all(sends), ['sent', 'sent', 'sent']);
    assert.equal(batcher.pending, 0);
  });

  it('records that waited for a slot go as soon as it is free, without lingering again', async () => {
    const { calls, gates, produce } = recorder();
    const batcher = createProduceBatcher({ ...base, lingerMs: 200, maxInFlightBatches: 1, produce });
    const first = batcher.send(record('a', 1));
    await tick(250);
    assert.equal(calls.length, 1);
    const second = batcher.send(record('a', 2));
    await tick(250);
    assert.equal(calls.length, 1, 'the slot is taken');
    gates[0]?.release();
    await first;
    await tick();
    assert.equal(calls.length, 2, 'sent within 10 ms of the slot freeing, not after another 200 ms linger');
    gates[1]?.release();
    await second;
  });

  it('with two slots, two batches are looked up and produced side by side', async () => {
    const { calls, gates, produce } = recorder();
    const lookups: string[][] = [];
    const screen = async (keys: readonly string[]) => {
      lookups.push([...keys]);
      return keys.map(() => false);
    };
    const batcher = createProduceBatcher({ ...base, maxInFlightBatches: 2, produce, screen });
    const sends = [batcher.send({ ...record('a', 1), dedupKey: 'm1' })];
    await tick();
    sends.push(batcher.send({ ...record('a', 2), dedupKey: 'm2' }));
    await tick();
    assert.deepEqual(lookups, [['m1'], ['m2']]);
    assert.equal(calls.length, 2);
    for (const gate of gates) gate.release();
    assert.deepEqual(await Promise.all(sends), ['sent', 'sent']);
  });
});
