import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createMessageDedup, messageDedupKeys } from '../../../src/modules/telemetry/message-dedup.js';
import { useTestRedis } from '../../helpers/redis.js';

/** The start of a 225 s bucket (a 900 s window has four). */
const T0 = 1_800_000_000_000;
const WIDTH_MS = 225_000;

describe('message dedup window', () => {
  const test = useTestRedis();
  let suite = 0;

  /** A dedup of its own (key prefix, clock at `now.ms`) over the suite's Redis. */
  function dedupAt(startMs: number, { keyPrefix = `${test.prefix}${suite++}:`, ...overrides }: { maxMarkDelayMs?: number; keyPrefix?: string } = {}) {
    const now = { ms: startMs };
    const errors: unknown[] = [];
    const dedup = createMessageDedup({
      redis: test.redis,
      keyPrefix,
      windowS: 900,
      timeoutMs: 1000,
      clock: () => now.ms,
      onError: (error) => errors.push(error),
      ...overrides,
    });
    // A bucket is one set on a single node, one per shard on a cluster.
    const layout = messageDedupKeys(test.redis, keyPrefix);
    const bucketKeys = (ms: number) => layout.bucketKeys(Math.floor(ms / WIDTH_MS));
    const sum = async (of: (key: string) => Promise<number>, ms: number) => (await Promise.all(bucketKeys(ms).map(of))).reduce((a, b) => a + b, 0);
    const bucket = {
      /** How many bucket sets of the time exist. */
      sets: (ms: number) => sum((key) => test.redis.exists(key), ms),
      marks: (ms: number) => sum((key) => test.redis.scard(key), ms),
      ttls: async (ms: number) => (await Promise.all(bucketKeys(ms).map((key) => test.redis.ttl(key)))).filter((ttl) => ttl !== -2),
      holds: async (ms: number, mark: string) => (await test.redis.sismember(layout.bucketKey(layout.shardOf(mark), Math.floor(ms / WIDTH_MS)), mark)) === 1,
    };
    return { dedup, now, errors, bucket, keyPrefix };
  }

  it('answers a batch of lookups in order, scoped to the device', async () => {
    const { dedup, errors, bucket } = dedupAt(T0 + 1000);
    const keys = Array.from({ length: 50 }, (_, i) => dedup.keyOf('device-a', `M${i}`));
    await Promise.all(keys.filter((_, i) => i % 2 === 0).map((key) => dedup.remember(key)));
    assert.deepEqual(
      await dedup.delivered(keys),
      keys.map((_, i) => i % 2 === 0),
    );
    assert.deepEqual(await dedup.delivered([]), []);
    // Another device's message with the same id is new.
    assert.deepEqual(await dedup.delivered([dedup.keyOf('device-b', 'M0')]), [false]);
    // The bucket's sets hold its marks, and expire a bucket after the window has passed its last mark.
    assert.equal(await bucket.marks(T0), 25);
    const ttls = await bucket.ttls(T0);
    assert.ok(ttls.length > 0);
    for (const ttl of ttls) assert.ok(ttl > (6 * WIDTH_MS - 1000) / 1000 - 10 && ttl <= (6 * WIDTH_MS - 1000) / 1000, `ttl ${ttl}`);
    assert.deepEqual(errors, []);
  });

  it('a lookup carries the marks waiting to be sent, written before it looks', async () => {
    // Marks would wait a minute on their own: only the lookup can have written them.
    const { dedup, errors, bucket } = dedupAt(T0, { maxMarkDelayMs: 60_000 });
    const acknowledged = dedup.keyOf('device-c', 'A1');
    const written = dedup.remember(acknowledged);
    assert.equal(await bucket.sets(T0), 0, 'not sent on its own');
    assert.deepEqual(await dedup.delivered([dedup.keyOf('device-c', 'B1'), acknowledged]), [false, true]);
    await written;
    assert.equal(await bucket.holds(T0, acknowledged), true);
    assert.deepEqual(errors, []);
  });

  it('remembers a mark for the whole window and forgets it within one bucket after', async () => {
    // Written at the very end of a bucket: the shortest life a mark can have.
    const { dedup, now, errors, bucket } = dedupAt(T0 + WIDTH_MS - 1);
    const key = dedup.keyOf('device-d', 'W1');
    await dedup.remember(key);
    now.ms += 900_000;
    assert.deepEqual(await dedup.delivered([key]), [true], 'seen at the end of the window');
    now.ms += WIDTH_MS;
    assert.deepEqual(await dedup.delivered([key]), [false], 'forgotten a bucket later');
    // That lookup deleted the bucket rather than leaving it for Redis to expire.
    assert.equal(await bucket.sets(T0), 0);
    assert.deepEqual(errors, []);
  });

  it('sees marks written by a host whose clock runs ahead into the next bucket', async () => {
    const behind = dedupAt(T0 + WIDTH_MS - 2000);
    const ahead = dedupAt(T0 + WIDTH_MS + 1000, { keyPrefix: behind.keyPrefix });
    const key = ahead.dedup.keyOf('device-e', 'S1');
    await ahead.dedup.remember(key);
    assert.deepEqual(await behind.dedup.delivered([key]), [true]);
    assert.deepEqual([...behind.errors, ...ahead.errors], []);
  });

  it('writes and looks up batches larger than one Redis command carries', async () => {
    const { dedup, errors } = dedupAt(T0 + 5000, { maxMarkDelayMs: 60_000 });
    const keys = Array.from({ length: 2500 }, (_, i) => dedup.keyOf('device-f', `L${i}`));
    const written = keys.filter((_, i) => i % 3 !== 1).map((key) => dedup.remember(key));
    const found = await dedup.delivered(keys);
    await Promise.all(written);
    assert.deepEqual(
      found,
      keys.map((_, i) => i % 3 !== 1),
    );
    assert.deepEqual(errors, []);
  });

  it('answers not delivered, and reports, when Redis does not answer', async () => {
    const down = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null, enableOfflineQueue: false });
    down.on('error', () => undefined);
    const errors: unknown[] = [];
    const dedup = createMessageDedup({ redis: down, keyPrefix: test.prefix, windowS: 900, timeoutMs: 200, onError: (e) => errors.push(e) });
    assert.deepEqual(await dedup.delivered([dedup.keyOf('d', '1'), dedup.keyOf('d', '2')]), [false, false]);
    await dedup.remember(dedup.keyOf('d', '1'));
    assert.equal(errors.length, 2);
    down.disconnect();
  });
});
