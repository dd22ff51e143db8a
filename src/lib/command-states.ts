/**
 * A command's life. It only moves forward, so events that arrive late, twice
 * or out of order cannot take it back:
 *
 *   queued → sent → delivered → acked                      (acked is final without replies)
 *                                 └→ succeeded | failed | timed_out   (replies)
 *   and, before it is acked: expired, dropped; canceled while still queued.
 *
 * A step may be skipped: a `message.delivered` event can arrive before the
 * publish call that sent the command has returned (queued → delivered), and a
 * reply can arrive before the ack (delivered → succeeded).
 */
export const COMMAND_STATES = ['queued', 'sent', 'delivered', 'acked', 'expired', 'dropped', 'canceled', 'succeeded', 'failed', 'timed_out'] as const;

export type CommandState = (typeof COMMAND_STATES)[number];

/** Each state and the states a command may reach it from. */
const REACHABLE_FROM: Readonly<Record<CommandState, readonly CommandState[]>> = {
  queued: [],
  sent: ['queued'],
  delivered: ['queued', 'sent'],
  acked: ['queued', 'sent', 'delivered'],
  // EMQX expires a message still queued or in flight; our sweeper covers what it held in memory and lost.
  expired: ['queued', 'sent', 'delivered'],
  dropped: ['queued', 'sent', 'delivered'],
  canceled: ['queued'],
  // A reply proves delivery, whatever the ack events say or have not said yet.
  succeeded: ['queued', 'sent', 'delivered', 'acked'],
  failed: ['queued', 'sent', 'delivered', 'acked'],
  timed_out: ['acked'],
};

export function reachableFrom(state: CommandState): readonly CommandState[] {
  return REACHABLE_FROM[state];
}
