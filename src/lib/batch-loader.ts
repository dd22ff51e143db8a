/**
 * Loads rows by id, many ids per query. A lookup waits for the end of the
 * event loop's turn, and, when `maxInFlight` queries are already out, for one
 * of them to return; then every id asked meanwhile goes to `loadMany` in one
 * call. A query costs a round trip and socket writes on both sides whatever
 * it returns, so the concurrent CONNECTs of a reconnect storm make a few
 * hundred queries instead of one each.
 *
 * An id absent from the map `loadMany` returns is answered null; a rejection
 * of `loadMany` rejects every lookup of that batch.
 */
export type BatchLoader<V> = (id: string) => Promise<V | null>;

export interface BatchLoaderOptions {
  /** Most ids in one query. */
  maxBatch?: number;
  /** Most queries out at once. */
  maxInFlight?: number;
}

interface Caller<V> {
  resolve(value: V | null): void;
  reject(error: unknown): void;
}

export function createBatchLoader<V>(loadMany: (ids: string[]) => Promise<ReadonlyMap<string, V>>, options: BatchLoaderOptions = {}): BatchLoader<V> {
  const maxBatch = options.maxBatch ?? 500;
  const maxInFlight = options.maxInFlight ?? 2;
  let waiting = new Map<string, Caller<V>[]>();
  let scheduled = false;
  let inFlight = 0;

  function take(): Map<string, Caller<V>[]> {
    if (waiting.size <= maxBatch) {
      const all = waiting;
      waiting = new Map();
      return all;
    }
    const batch = new Map<string, Caller<V>[]>();
    for (const [id, callers] of waiting) {
      if (batch.size === maxBatch) break;
      batch.set(id, callers);
      waiting.delete(id);
    }
    return batch;
  }

  function send() {
    scheduled = false;
    while (inFlight < maxInFlight && waiting.size > 0) {
      const batch = take();
      inFlight++;
      // Through then(): a loadMany that throws instead of rejecting fails its batch too.
      Promise.resolve([...batch.keys()])
        .then(loadMany)
        .then(
          (found) => {
            for (const [id, callers] of batch) for (const caller of callers) caller.resolve(found.get(id) ?? null);
          },
          (error: unknown) => {
            for (const callers of batch.values()) for (const caller of callers) caller.reject(error);
          },
        )
        .finally(() => {
          inFlight--;
          schedule();
        });
    }
  }

  function schedule() {
    if (scheduled || waiting.size === 0 || inFlight >= maxInFlight) return;
    scheduled = true;
    setImmediate(send);
  }

  return (id) =>
    new Promise<V | null>((resolve, reject) => {
      const callers = waiting.get(id);
      if (callers) callers.push({ resolve, reject });
      else waiting.set(id, [{ resolve, reject }]);
      schedule();
    });
}
