import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPeriodic } from '../../src/lib/periodic.js';

/** A task whose runs the test ends one by one; it records when each starts and ends. */
function gatedTask() {
  const events: string[] = [];
  const gates: (() => void)[] = [];
  const failures: (Error | null)[] = [];
  let started = 0;
  return {
    events,
    get started() {
      return started;
    },
    /** The next run fails with this error. */
    failNext(error: Error) {
      failures.push(error);
    },
    async task() {
      const run = ++started;
      events.push(`start ${run}`);
      const failure = failures.shift() ?? null;
      await new Promise<void>((resolve) => gates.push(resolve));
      events.push(`end ${run}`);
      if (failure) throw failure;
    },
    /** Ends the oldest run still under way, and lets what follows it happen. */
    async release() {
      const gate = gates.shift();
      assert.ok(gate, 'no run under way');
      gate();
      await sleep(1);
    },
    get waiting() {
      return gates.length;
    },
  };
}

function recordingLog() {
  const lines: string[] = [];
  return { lines, warn: (_: object, message: string) => void lines.push(`warn: ${message}`), info: (_: object, message: string) => void lines.push(`info: ${message}`) };
}

/** Whether the promise has settled, and how. */
function watch(promise: Promise<void>) {
  const watched = { settled: null as null | 'resolved' | 'rejected', error: undefined as unknown };
  promise.then(
    () => (watched.settled = 'resolved'),
    (error: unknown) => {
      watched.settled = 'rejected';
      watched.error = error;
    },
  );
  return watched;
}

describe('createPeriodic', () => {
  it('runNow runs at once when nothing runs, and resolves when that run ends', async () => {
    const gated = gatedTask();
    const periodic = createPeriodic('test', () => gated.task(), 60_000, recordingLog());
    const call = watch(periodic.runNow());
    assert.equal(gated.started, 1, 'started within the call');
    await sleep(1);
    assert.equal(call.settled, null);
    await gated.release();
    assert.equal(call.settled, 'resolved');
  });

  it('coalesces: callers during a run get one more run after it, whatever their number', async () => {
    const gated = gatedTask();
    const periodic = createPeriodic('test', () => gated.task(), 60_000, recordingLog());
    const first = watch(periodic.runNow());
    const during = [watch(periodic.runNow()), watch(periodic.runNow()), watch(periodic.runNow())];
    await gated.release();
    assert.equal(first.settled, 'resolved');
    assert.deepEqual(
      during.map((call) => call.settled),
      [null, null, null],
      'the run under way may have started before their calls: they wait for the next',
    );
    assert.equal(gated.started, 2, 'one more run for all three');
    await gated.release();
    assert.deepEqual(
      during.map((call) => call.settled),
      ['resolved', 'resolved', 'resolved'],
    );
    assert.equal(gated.started, 2);
    assert.equal(gated.waiting, 0);
    assert.deepEqual(gated.events, ['start 1', 'end 1', 'start 2', 'end 2']);
  });

  it('a caller during the follow-up run waits for a run after that one', async () => {
    const gated = gatedTask();
    const periodic = createPeriodic('test', () => gated.task(), 60_000, recordingLog());
    void periodic.runNow();
    const second = watch(periodic.runNow());
    await gated.release();
    const third = watch(periodic.runNow());
    await gated.release();
    assert.equal(second.settled, 'resolved');
    assert.equal(third.settled, null);
    await gated.release();
    assert.equal(third.settled, 'resolved');
    assert.equal(gated.started, 3);
  });

  it('never overlaps runs, with the interval and runNow mixed', async () => {
    let active = 0;
    let mostAtOnce = 0;
    let runs = 0;
    const periodic = createPeriodic(
      'test',
      async () => {
        active++;
        runs++;
        mostAtOnce = Math.max(mostAtOnce, active);
        await sleep(2);
        active--;
      },
      1,
      recordingLog(),
    );
    periodic.start();
    const calls: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      calls.push(periodic.runNow());
      await sleep(i % 3);
    }
    await Promise.all(calls);
    await periodic.stop();
    assert.equal(mostAtOnce, 1);
    assert.ok(runs >= 2);
  });

  it('runs every interval once started, counted from the end of the previous run', async () => {
    let runs = 0;
    const periodic = createPeriodic('test', async () => void runs++, 5, recordingLog());
    await sleep(30);
    assert.equal(runs, 0, 'nothing runs before start');
    periodic.start();
    await sleep(100);
    await periodic.stop();
    assert.ok(runs >= 3, `${runs} runs`);
  });

  it('stop waits for the run under way; the run callers were waiting for never starts, and runNow after stop rejects', async () => {
    const gated = gatedTask();
    const periodic = createPeriodic('test', () => gated.task(), 1, recordingLog());
    periodic.start();
    const first = watch(periodic.runNow());
    const waiting = watch(periodic.runNow());
    const stopped = watch(periodic.stop());
    await sleep(5);
    assert.equal(stopped.settled, null, 'the run is still under way');
    await gated.release();
    assert.equal(stopped.settled, 'resolved');
    assert.equal(first.settled, 'resolved');
    assert.equal(waiting.settled, 'rejected');
    assert.match(String(waiting.error), /test stopped/);
    await assert.rejects(periodic.runNow(), /test stopped/);
    await sleep(10);
    assert.equal(gated.started, 1, 'no run after stop, not from the interval either');
  });

  it('a failing run rejects its callers; failing is logged once, and recovery once', async () => {
    const gated = gatedTask();
    const log = recordingLog();
    const periodic = createPeriodic('test', () => gated.task(), 60_000, log);
    gated.failNext(new Error('down'));
    gated.failNext(new Error('still down'));
    const first = watch(periodic.runNow());
    const second = watch(periodic.runNow());
    await gated.release();
    assert.equal(first.settled, 'rejected');
    assert.equal((first.error as Error).message, 'down');
    assert.equal(second.settled, null, 'the follow-up run is under way');
    await gated.release();
    assert.equal(second.settled, 'rejected');
    assert.equal((second.error as Error).message, 'still down');
    const third = watch(periodic.runNow());
    await gated.release();
    assert.equal(third.settled, 'resolved');
    assert.deepEqual(log.lines, ['warn: test failed; retrying every interval', 'info: test recovered']);
  });

  it('a dropped runNow promise of a failing run does not crash the process', async () => {
    const gated = gatedTask();
    const periodic = createPeriodic('test', () => gated.task(), 60_000, recordingLog());
    gated.failNext(new Error('down'));
    gated.failNext(new Error('down'));
    void periodic.runNow();
    void periodic.runNow();
    await gated.release();
    await gated.release();
    assert.equal(gated.started, 2);
  });
});
