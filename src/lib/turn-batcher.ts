/**
 * Gathers the calls made in one turn of the event loop into a single flush:
 * the callers of one Kafka batch acknowledgement (the dedup marks) share one
 * Redis command instead of one each.
 * Each caller gets its own result (`flush` returns them in input order) or
 * the flush's error. A turn with more than `maxBatch` calls is split.
 *
 * Every batcher with work drains in the same callback at the end of the
 * turn, so the commands they issue leave in one write to Redis (the client
 * pipelines what is issued together): on loopback, the write and the wake-up
 * it causes cost more than the commands.
 */
export function createTurnBatcher<In, Out>(
  flush: (items: readonly In[]) => Promise<readonly Out[]>,
  maxBatch = 1000,
): (item: In) => Promise<Out> {
  interface Waiting {
    item: In;
    resolve(value: Out): void;
    reject(error: unknown): void;
  }
  let pending: Waiting[] = [];

  async function run(batch: Waiting[]) {
    try {
      const results = await flush(batch.map((waiting) => waiting.item));
      if (results.length !== batch.length) throw new Error(`batch flush returned ${results.length} results for ${batch.length} items`);
      batch.forEach((waiting, index) => waiting.resolve(results[index] as Out));
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
    }
  }

  function drain() {
    const batch = pending;
    pending = [];
    if (batch.length > 0) void run(batch);
  }

  return (item) =>
    new Promise<Out>((resolve, reject) => {
      pending.push({ item, resolve, reject });
      if (pending.length >= maxBatch) drain();
      else if (pending.length === 1) atEndOfTurn(drain);
    });
}

let due: (() => void)[] = [];

function atEndOfTurn(drain: () => void) {
  if (due.length === 0) setImmediate(drainAll);
  due.push(drain);
}

function drainAll() {
  const drains = due;
  due = [];
  for (const drain of drains) drain();
}
