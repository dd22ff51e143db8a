import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createBatchLoader } from '../../src/lib/batch-loader.js';

/** A loadMany that records each call and answers `value-{id}` for ids not in `absent`. */
function recordingLoad(options: { absent?: readonly string[]; fail?: (ids: string[]) => Error | null } = {}) {
  const calls: string[][] = [];
  let resolveCall: (() => void)[] = [];
  let hold = false;
  const load = async (ids: string[]) => {
    calls.push(ids);
    if (hold) await new Promise<void>((resolve) => resolveCall.push(resolve));
    const error = options.fail?.(ids);
    if (error) throw error;
    return new Map(ids.filter((id) => !options.absent?.includes(id)).map((id) => [id, `value-${id}`]));
  };
  return {
    load,
    calls,
    holdCalls() {
      hold = true;
    },
    releaseCalls() {
      hold = false;
      const waiting = resolveCall;
      resolveCall = [];
      for (const resolve of waiting) resolve();
    },
  };
}

describe('createBatchLoader', () => {
  it('answers the lookups of one turn of the event loop with one call, each id asked once', async () => {
    const source = recordingLoad();
    const get = createBatchLoader(source.load);
    const values = await Promise.all(['a', 'b', 'a', 'c'].map(get));
    assert.deepEqual(values, ['value-a', 'value-b', 'value-a', 'value-c']);
    assert.deepEqual(source.calls, [['a', 'b', 'c']]);
  });

  it('answers null for an id the source does not have, and the others their values', async () => {
    const source = recordingLoad({ absent: ['b'] });
    const get = createBatchLoader(source.load);
    assert.deepEqual(await Promise.all(['a', 'b'].map(get)), ['value-a', null]);
  });

  it('rejects every lookup of a batch whose call fails, whether it rejects or throws, and recovers', async () => {
    for (const throwSync of [false, true]) {
      const failure = new Error('database down');
      let failing = true;
      const load = (ids: string[]): Promise<ReadonlyMap<string, string>> => {
        if (failing && throwSync) throw failure;
        if (failing) return Promise.reject(failure);
        return Promise.resolve(new Map(ids.map((id) => [id, id])));
      };
      const get = createBatchLoader(load);
      const outcomes = await Promise.allSettled(['a', 'b'].map(get));
      assert.deepEqual(
        outcomes.map((o) => (o.status === 'rejected' ? o.reason : o.value)),
        [failure, failure],
      );
      failing = false;
      assert.equal(await get('a'), 'a');
    }
  });

  it('puts at most maxBatch ids in one call', async () => {
    const source = recordingLoad();
    const get = createBatchLoader(source.load, { maxBatch: 2, maxInFlight: 10 });
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map(get));
    assert.deepEqual(source.calls, [['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('keeps at most maxInFlight calls out; lookups meanwhile wait and go in the next call together', async () => {
    const source = recordingLoad();
    const get = createBatchLoader(source.load, { maxInFlight: 1 });
    source.holdCalls();
    const first = get('a');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(source.calls, [['a']]);

    const later = [get('b'), get('c')];
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(source.calls, [['a']], 'no second call while the first is out');

    source.releaseCalls();
    assert.equal(await first, 'value-a');
    await new Promise((resolve) => setImmediate(resolve));
    source.releaseCalls();
    assert.deepEqual(await Promise.all(later), ['value-b', 'value-c']);
    assert.deepEqual(source.calls, [['a'], ['b', 'c']]);
  });
});
