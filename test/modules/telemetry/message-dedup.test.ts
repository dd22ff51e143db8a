import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createMessageDedup } from '../../../src/modules/telemetry/message-dedup.js';
import { useTestRedis } from '../../helpers/redis.js';

describe('message dedup window', () => {
  const test = useTestRedis();
  const { prefix } = test;

  it('answers a batch of lookups in order, and remembers each mark with the window as TTL', async () => {
    const errors: unknown[] = [];
    const { redis } = test;
    const dedup = createMessageDedup({ redis, keyPrefix: prefix, windowS: 900, timeoutMs: 1000, onError: (e) => errors.push(e) });
    const keys = Array.from({ length: 50 }, (_, i) => dedup.keyOf('device-a', `M${i}`));
    await Promise.all(keys.filter((_, i) => i % 2 === 0).map((key) => dedup.remember(key)));
    assert.deepEqual(
      await dedup.delivered(keys),
      keys.map((_, i) => i % 2 === 0),
    );
    assert.deepEqual(await dedup.delivered([]), []);
    // Scoped to the device: another device's message with the same id is new.
    assert.deepEqual(await dedup.delivered([dedup.keyOf('device-b', 'M0')]), [false]);
    const ttl = await redis.ttl(`${prefix}ingest:seen:device-a:M0`);
    assert.ok(ttl > 890 && ttl <= 900, `ttl ${ttl}`);
    assert.deepEqual(errors, []);
  });

  it('a lookup carries the marks waiting to be sent, written before it looks', async () => {
    const errors: unknown[] = [];
    const { redis } = test;
    // Marks would wait a minute on their own: only the lookup can have written them.
    const dedup = createMessageDedup({ redis, keyPrefix: prefix, windowS: 900, timeoutMs: 1000, maxMarkDelayMs: 60_000, onError: (e) => errors.push(e) });
    const acknowledged = dedup.keyOf('device-c', 'A1');
    const written = dedup.remember(acknowledged);
    assert.equal(await redis.exists(acknowledged), 0, 'not sent on its own');
    assert.deepEqual(await dedup.delivered([dedup.keyOf('device-c', 'B1'), acknowledged]), [false, true]);
    await written;
    const ttl = await redis.ttl(acknowledged);
    assert.ok(ttl > 890 && ttl <= 900, `ttl ${ttl}`);
    assert.deepEqual(errors, []);
  });

  it('answers not delivered, and reports, when Redis does not answer', async () => {
    const down = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null, enableOfflineQueue: false });
    down.on('error', () => undefined);
    const errors: unknown[] = [];
    const dedup = createMessageDedup({ redis: down, keyPrefix: prefix, windowS: 900, timeoutMs: 200, onError: (e) => errors.push(e) });
    assert.deepEqual(await dedup.delivered([dedup.keyOf('d', '1'), dedup.keyOf('d', '2')]), [false, false]);
    await dedup.remember(dedup.keyOf('d', '1'));
    assert.equal(errors.length, 2);
    down.disconnect();
  });
});
