import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLifecycle } from '../../src/wiring/lifecycle.js';

function recordingLog() {
  const errors: { phase: string; message: string }[] = [];
  return {
    errors,
    log: { error: (object: { err: Error; phase: string }) => void errors.push({ phase: object.phase, message: object.err.message }) },
  };
}

describe('lifecycle', () => {
  it('runs the steps of the phase asked for, and only those', async () => {
    const lifecycle = createLifecycle(recordingLog().log);
    const ran: string[] = [];
    lifecycle.onReady(() => void ran.push('start'));
    lifecycle.preClose(() => void ran.push('stop'));
    lifecycle.onClose(() => void ran.push('flush'));
    await lifecycle.run('onReady');
    assert.deepEqual(ran, ['start']);
    await lifecycle.run('preClose');
    await lifecycle.run('onClose');
    assert.deepEqual(ran, ['start', 'stop', 'flush']);
  });

  it('runs the steps of a phase at once: none waits for another', async () => {
    const lifecycle = createLifecycle(recordingLog().log);
    const second = Promise.withResolvers<void>();
    // Run one after the other, the first would wait for the second forever.
    lifecycle.preClose(() => second.promise);
    lifecycle.preClose(() => second.resolve());
    await lifecycle.run('preClose');
  });

  it('runs every step when some fail, then rejects with the first failure and logs each', async () => {
    const { log, errors } = recordingLog();
    const lifecycle = createLifecycle(log);
    let stopped = false;
    lifecycle.preClose(() => {
      throw new Error('thrown');
    });
    lifecycle.preClose(() => Promise.reject(new Error('rejected')));
    lifecycle.preClose(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      stopped = true;
    });
    await assert.rejects(lifecycle.run('preClose'), { message: 'thrown' });
    assert.equal(stopped, true, 'the slow step ended before the phase did');
    assert.deepEqual(errors, [
      { phase: 'preClose', message: 'thrown' },
      { phase: 'preClose', message: 'rejected' },
    ]);
  });
});
