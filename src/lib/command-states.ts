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
 *
 * `nextState` is the whole machine: the repository builds its SQL from it, and
 * the dispatcher, the event handlers, the sweeper and the API name events.
 */
export const COMMAND_STATES = ['queued', 'sent', 'delivered', 'acked', 'expired', 'dropped', 'canceled', 'succeeded', 'failed', 'timed_out'] as const;

export type CommandState = (typeof COMMAND_STATES)[number];

/** What moves a command. */
export const COMMAND_EVENTS = [
  'published', // EMQX answered our publish 200: it handed the command to the device's session
  'publish_refused', // EMQX answered our publish 400 (too large, bad topic)
  'expired_before_publish', // the dispatcher found the command it was about to publish past its expiry
  'delivered', // message.delivered
  'acked', // message.acked
  'expired_in_emqx', // delivery.dropped, reason expired
  'dropped_by_emqx', // delivery.dropped, any other reason (queue_full, ...)
  'expired_by_sweeper', // our sweeper found it past its expiry, never acked
  'canceled', // through the API
  'reply_ok', // the device replied ok
  'reply_error', // the device replied error
  'reply_timed_out', // no reply within the response timeout after the ack
  'device_deleted', // its device was deleted
] as const;

export type CommandEvent = (typeof COMMAND_EVENTS)[number];

/** Events that only happen to a command that waits for a reply (replies are refused for the others; only they have a reply due). */
const REPLY_EVENTS: ReadonlySet<CommandEvent> = new Set(['reply_ok', 'reply_error', 'reply_timed_out']);

/** The state `event` moves a command in `state` to; null when it changes nothing (late, repeated, or not for this state). */
export function nextState(state: CommandState, event: CommandEvent): CommandState | null {
  const beforeAck = state === 'queued' || state === 'sent' || state === 'delivered';
  switch (event) {
    case 'published':
      return state === 'queued' ? 'sent' : null;
    // The dispatcher's own outcomes apply only to the queued command it claimed: their
    // reasons (refused_by_emqx, not_sent) would be wrong for one that events moved on meanwhile.
    case 'publish_refused':
      return state === 'queued' ? 'dropped' : null;
    case 'expired_before_publish':
      return state === 'queued' ? 'expired' : null;
    case 'delivered':
      return state === 'queued' || state === 'sent' ? 'delivered' : null;
    case 'acked':
      return beforeAck ? 'acked' : null;
    // Our sweeper covers what EMQX held in memory and lost.
    case 'expired_in_emqx':
    case 'expired_by_sweeper':
      return beforeAck ? 'expired' : null;
    case 'dropped_by_emqx':
      return beforeAck ? 'dropped' : null;
    case 'canceled':
      return state === 'queued' ? 'canceled' : null;
    // A reply proves delivery, whatever the ack events say or have not said yet.
    case 'reply_ok':
      return beforeAck || state === 'acked' ? 'succeeded' : null;
    case 'reply_error':
      return beforeAck || state === 'acked' ? 'failed' : null;
    case 'reply_timed_out':
      return state === 'acked' ? 'timed_out' : null;
    // What was never handed over is canceled, what EMQX holds dropped. An
    // acked command waiting for its reply is left as it is (and deleted with the device).
    case 'device_deleted':
      return state === 'queued' ? 'canceled' : state === 'sent' || state === 'delivered' ? 'dropped' : null;
  }
}

/**
 * Whether a command in `state` is finished (its `finished_at` is set): no
 * event that can still happen to it moves it. `acked` is where a command that
 * waits for no reply ends.
 */
export function isFinished(state: CommandState, waitsForReply: boolean): boolean {
  return COMMAND_EVENTS.every((event) => (!waitsForReply && REPLY_EVENTS.has(event)) || nextState(state, event) === null);
}
