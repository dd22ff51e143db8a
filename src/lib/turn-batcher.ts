/**
 * Calls made in one turn of the event loop go out together: `runMany` gets
 * every input of the turn, in the order they were made, and answers with one
 * output per input, in the same order. Unlike the batch loader nothing is
 * merged: two calls with equal inputs are two entries. A rejection of
 * `runMany` (or an answer of the wrong length) rejects every call of its batch.
 */
export type TurnBatcher<I, O> = (input: I) => Promise<O>;

/**
 * What one entry of a batch came to, for a `runMany` whose entries fail
 * separately (the caller throws `error` for its own entry).
 */
export type Settled<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: unknown };

interface Call<I, O> {
  input: I;
  resolve(output: O): void;
  reject(error: unknown): void;
}

export function createTurnBatcher<I, O>(runMany: (inputs: I[]) => Promise<readonly O[]>): TurnBatcher<I, O> {
  let queued: Call<I, O>[] = [];

  function send() {
    const batch = queued;
    queued = [];
    // Through then(): a runMany that throws instead of rejecting fails its batch too.
    Promise.resolve(batch.map((call) => call.input))
      .then(runMany)
      .then((outputs) => {
        if (outputs.length !== batch.length) throw new Error(`expected ${batch.length} answers, got ${outputs.length}`);
        batch.forEach((call, index) => call.resolve(outputs[index] as O));
      })
      .catch((error: unknown) => {
        for (const call of batch) call.reject(error);
      });
  }

  return (input) =>
    new Promise<O>((resolve, reject) => {
      if (queued.length === 0) setImmediate(send);
      queued.push({ input, resolve, reject });
    });
}
