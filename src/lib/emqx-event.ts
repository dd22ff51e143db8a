/**
 * One EMQX rule-engine event, as the HTTP action sends it (docs/emqx-contract.md §C):
 * the rule's SELECT output as JSON. Only `event` is common to all; each handler
 * validates the fields it needs.
 */
export type EmqxEvent = { readonly event: string } & Record<string, unknown>;

/**
 * A JSON object naming its event in 1 to 64 characters. Checked by hand, not
 * with a schema: it runs for every telemetry message, and a loose object
 * schema copies every field of the event to answer.
 */
export function isEmqxEvent(value: unknown): value is EmqxEvent {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const { event } = value as { event?: unknown };
  return typeof event === 'string' && event.length >= 1 && event.length <= 64;
}

/**
 * What a handler tells EMQX: `handled` (2xx, done — including poison messages
 * that went to a dead-letter topic) or `retry` (503: EMQX retries later).
 * Handlers never make EMQX answer 500: EMQX drops the message on any status
 * other than 2xx, 429 and 503.
 */
export type EventOutcome = { kind: 'handled'; status?: 200 | 202 | 204 } | { kind: 'retry'; reason: string };
/** The outcome of an event taken: one object, never changed, for every handler to answer with. */
export const HANDLED: EventOutcome = Object.freeze({ kind: 'handled' });

export type EventHandler = (event: EmqxEvent) => Promise<EventOutcome>;

/** Handlers by event name (`message.publish`, `client.connected`, ...). */
export type EventHandlers = Readonly<Record<string, EventHandler>>;

/**
 * A request to `/emqx/events` that no handler can take: not JSON, no event
 * name, an event nobody here consumes, or larger than any event the
 * configuration allows. It is answered 2xx once it is kept somewhere (EMQX
 * drops what gets any other answer but 429 and 503, and retrying would not
 * make it usable).
 */
export interface UnusableEvent {
  readonly reason: 'invalid_event' | 'unknown_event' | 'event_too_large';
  readonly detail: string;
  /** The request body as received (its first bytes only when too large). */
  readonly body: Buffer;
  /** The size of the whole body, in bytes. */
  readonly size: number;
  /** The event, when the body was JSON naming one. */
  readonly event: EmqxEvent | null;
}

export type UnusableEventSink = (unusable: UnusableEvent) => Promise<EventOutcome>;

/**
 * The handlers of several features as one: an event more than one of them
 * takes (`client.connected`) goes to each in turn, and is retried when one
 * asks for it (every handler takes a repeated event as a repeat).
 */
export function combineEventHandlers(...maps: readonly EventHandlers[]): EventHandlers {
  const byName = new Map<string, EventHandler[]>();
  for (const map of maps) for (const [name, handler] of Object.entries(map)) byName.set(name, [...(byName.get(name) ?? []), handler]);
  const combined: Record<string, EventHandler> = {};
  for (const [name, handlers] of byName) {
    combined[name] =
      handlers.length === 1
        ? (handlers[0] as EventHandler)
        : async (event) => {
            let outcome: EventOutcome = HANDLED;
            for (const handler of handlers) {
              const result = await handler(event);
              if (result.kind === 'retry') return result;
              outcome = result;
            }
            return outcome;
          };
  }
  return combined;
}
