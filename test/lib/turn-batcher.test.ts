import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { createTurnBatcher } from '../../src/lib/turn-batcher.js';

describe('createTurnBatcher', () => {
  it('flushes the calls of one turn together and answers each caller', async () => {
    const flushes: number[][] = [];
    const double = createTurnBatcher(async (items: readonly number[]) => {
      flushes.push([...items]);
      return items.map((n) => n * 2);
    });
    const first = await Promise.all([double(1), double(2), double(3)]);
    const second = await double(4);
    assert.deepEqual(first, [2, 4, 6]);
    assert.equal(second, 8);
    assert.deepEqual(flushes, [[1, 2, 3], [4]]);
  });

  it('splits a turn larger than the batch limit', async () => {
    const sizes: number[] = [];
    const echo = createTurnBatcher(async (items: readonly number[]) => {
      sizes.push(items.length);
      return items;
    }, 4);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => echo(i)));
    assert.deepEqual(answers, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(sizes, [4, 4, 2]);
  });

  it('rejects every caller of a failed flush, and the next turn starts afresh', async () => {
    let fail = true;
    const flaky = createTurnBatcher(async (items: readonly string[]) => {
      if (fail) throw new Error('down');
      return items.map((s) => s.toUpperCase());
    });
    const results = await Promise.allSettled([flaky('a'), flaky('b')]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    fail = false;
    await nextTurn();
    assert.equal(await flaky('c'), 'C');
  });

  it('drains every batcher with work before the next tick, so their commands leave together', async () => {
    const order: string[] = [];
    let seenByNextTick: string[] = [];
    const a = createTurnBatcher(async (items: readonly string[]) => {
      order.push(`a:${items.join('')}`);
      // The Redis client flushes what was issued on the next tick.
      process.nextTick(() => (seenByNextTick = [...order]));
      return items;
    });
    const b = createTurnBatcher(async (items: readonly string[]) => {
      order.push(`b:${items.join('')}`);
      return items;
    });
    await Promise.all([a('1'), b('2'), a('3')]);
    assert.deepEqual(order, ['a:13', 'b:2']);
    assert.deepEqual(seenByNextTick, ['a:13', 'b:2']);
  });

  it('rejects when the flush returns the wrong number of results', async () => {
    const broken = createTurnBatcher(async () => [1]);
    await assert.rejects(Promise.all([broken(1), broken(2)]), /2 items/);
  });
});
