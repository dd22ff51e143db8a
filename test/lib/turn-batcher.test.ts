import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { createTurnBatcher } from '../../src/lib/turn-batcher.js';

describe('createTurnBatcher', () => {
  it('sends the calls of one turn in one runMany, in order, equal inputs as separate entries', async () => {
    const batches: string[][] = [];
    const call = createTurnBatcher(async (inputs: string[]) => {
      batches.push(inputs);
      return inputs.map((input, index) => `${input}#${index}`);
    });
    const first = await Promise.all(['a', 'b', 'a'].map(call));
    assert.deepEqual(first, ['a#0', 'b#1', 'a#2']);
    const second = await Promise.all([call('c'), nextTurn().then(() => call('d'))]);
    assert.deepEqual(second, ['c#0', 'd#0']);
    assert.deepEqual(batches, [['a', 'b', 'a'], ['c'], ['d']]);
  });

  it('rejects every call of a batch whose runMany fails, throws or answers the wrong count, and goes on', async () => {
    const failures: ((inputs: string[]) => Promise<string[]>)[] = [
      () => Promise.reject(new Error('down')),
      () => {
        throw new Error('thrown');
      },
      async (inputs) => inputs.slice(1),
    ];
    for (const fail of failures) {
      let failing = true;
      const call = createTurnBatcher(async (inputs: string[]) => (failing ? fail(inputs) : inputs));
      const settled = await Promise.allSettled([call('x'), call('y')]);
      assert.deepEqual(
        settled.map((result) => result.status),
        ['rejected', 'rejected'],
      );
      failing = false;
      assert.equal(await call('z'), 'z');
    }
  });
});
