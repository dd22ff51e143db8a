/**
 * `next(value)` at once when `value` is already known, or once it settles
 * when it is a promise. The hot paths answer from memory without a trip
 * through the microtask queue, and fall back to waiting only where they must
 * ask a dependency.
 */
export function andThen<T, U>(value: T | Promise<T>, next: (value: T) => U | Promise<U>): U | Promise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}
