import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { andThen } from '../../src/lib/and-then.js';

describe('andThen', () => {
  it('goes on at once with a value that is already known', () => {
    const seen: number[] = [];
    const result = andThen(2, (value) => {
      seen.push(value);
      return value * 10;
    });
    // No promise and no microtask: the continuation has run before andThen returns.
    assert.equal(result, 20);
    assert.deepEqual(seen, [2]);
  });

  it('waits for a promise and passes on its value, or its rejection', async () => {
    const pending = andThen(Promise.resolve(3), (value) => value * 10);
    assert.ok(pending instanceof Promise);
    assert.equal(await pending, 30);
    await assert.rejects(
      andThen(Promise.reject(new Error('down')), () => 'never') as Promise<string>,
      /down/,
    );
  });

  it('flattens a continuation that returns a promise', async () => {
    assert.equal(await andThen(1, async (value) => value + 1), 2);
    assert.equal(await andThen(Promise.resolve(1), async (value) => value + 1), 2);
  });
});
