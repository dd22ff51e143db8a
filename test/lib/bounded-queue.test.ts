import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBoundedQueue, QueueFullError } from '../../src/lib/bounded-queue.js';

describe('createBoundedQueue', () => {
  it('runs at most `concurrency` jobs at once', async () => {
    const queue = createBoundedQueue({ concurrency: 2, maxWaitMs: 10_000 });
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 8 }, () =>
        queue.run(async () => {
          peak = Math.max(peak, ++running);
          await sleep(5);
          running--;
        }),
      ),
    );
    assert.equal(peak, 2);
  });

  it('refuses at once the jobs that would wait longer than maxWaitMs', async () => {
    const queue = createBoundedQueue({ concurrency: 1, maxWaitMs: 100, initialJobMs: 40 });
    const startedAt = Date.now();
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, () => queue.run(() => sleep(40).then(() => 'done'))));
    const refused = outcomes.filter((o) => o.status === 'rejected');
    assert.ok(refused.length >= 6, `refused ${refused.length}`);
    for (const outcome of refused) assert.ok(outcome.status === 'rejected' && outcome.reason instanceof QueueFullError);
    assert.ok(Date.now() - startedAt < 400);
  });

  it('refuses a queued job whose deadline passed before its turn', async () => {
    let clock = 0;
    const queue = createBoundedQueue({ concurrency: 1, maxWaitMs: 50, initialJobMs: 1, now: () => clock });
    let release: () => void = () => undefined;
    const blocker = queue.run(() => new Promise<void>((resolve) => (release = resolve)));
    const waiting = queue.run(async () => 'late');
    clock = 1000;
    release();
    await blocker;
    await assert.rejects(waiting, QueueFullError);
  });
});
