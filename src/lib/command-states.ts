/**
 * A command's life. It moves forward, so events that arrive late, twice or
 * out of order cannot take it back:
 *
 *   queued → sent → delivered → acked                      (acked is final without replies)
 *                                 └→ succeeded | failed | timed_out   (replies)
 *   and, before it is acked: expired, dropped; canceled while still queued.
 *
 * A step may be skipped: a `message.delivered` event can arrive before the
 * publish call that sent the command has returned (queued → delivered), and a
 * reply can arrive before the ack (delivered → succeeded).
 *
 * Two exceptions, both for what EMQX lost or the service decided without
 * knowing: a session EMQX discarded (the device connected with a clean
 * start) takes its unacknowledged commands back to `queued`, to be sent
 * again; and an ack or reply wins over an expiry the service decided itself
 * (reasons SERVICE_EXPIRY_REASONS), a delivery over one that said the
 * command never reached the device.
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
  'session_lost', // the device connected with a clean start: EMQX discarded the session and what it held
] as const;

export type CommandEvent = (typeof COMMAND_EVENTS)[number];

/** Events that only happen to a command that waits for a reply (replies are refused for the others; only they have a reply due). */
const REPLY_EVENTS: ReadonlySet<CommandEvent> = new Set(['reply_ok', 'reply_error', 'reply_timed_out']);

/**
 * Reasons of an `expired` the service decided (its sweeper, its dispatcher),
 * not EMQX: the device may have got the command all the same.
 */
export const SERVICE_EXPIRY_REASONS = ['not_sent', 'not_delivered', 'not_acked'] as const;
/** Of those, the ones that say the command never reached the device: a delivery proves them wrong. */
const NOT_DELIVERED_REASONS: ReadonlySet<string> = new Set(['not_sent', 'not_delivered']);

/**
 * The state `event` moves a command in `state` to; null when it changes
 * nothing (late, repeated, or not for this state). `reason` is the command's
 * reason, which matters only for `expired`.
 */
export function nextState(state: CommandState, event: CommandEvent, reason: string | null = null): CommandState | null {
  const expiredByService = state === 'expired' && (SERVICE_EXPIRY_REASONS as readonly (string | null)[]).includes(reason);
  const beforeAck = state === 'queued' || state === 'sent' || state === 'delivered';
  // Evidence the device got the command overrides the service's own expiry.
  const ackable = beforeAck || expiredByService;
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
      return state === 'queued' || state === 'sent' || (expiredByService && NOT_DELIVERED_REASONS.has(reason ?? '')) ? 'delivered' : null;
    case 'acked':
      return ackable ? 'acked' : null;
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
      return ackable || state === 'acked' ? 'succeeded' : null;
    case 'reply_error':
      return ackable || state === 'acked' ? 'failed' : null;
    case 'reply_timed_out':
      return state === 'acked' ? 'timed_out' : null;
    // What was never handed over is canceled, what EMQX holds dropped. An
    // acked command waiting for its reply is left as it is (and deleted with the device).
    case 'device_deleted':
      return state === 'queued' ? 'canceled' : state === 'sent' || state === 'delivered' ? 'dropped' : null;
    // What the discarded session held never reaches the device: it is sent again.
    case 'session_lost':
      return state === 'sent' || state === 'delivered' ? 'queued' : null;
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

/** The (state, reason) pairs nextState tells apart: every state, and `expired` once per service reason and once for any other. */
export const STATE_VARIANTS: readonly { state: CommandState; reason: string | null }[] = COMMAND_STATES.flatMap(
  (state): { state: CommandState; reason: string | null }[] =>
    state === 'expired' ? [...SERVICE_EXPIRY_REASONS.map((reason) => ({ state, reason })), { state, reason: null }] : [{ state, reason: null }],
);
