import { z } from 'zod';

/**
 * One EMQX rule-engine event, as the HTTP action sends it (emqx-contract.md §C):
 * the rule's SELECT output as JSON. Only `event` is common to all; each handler
 * validates the fields it needs.
 */
export const emqxEventSchema = z.looseObject({ event: z.string().min(1).max(64) });
export type EmqxEvent = z.output<typeof emqxEventSchema> & Record<string, unknown>;

/**
 * What a handler tells EMQX: `handled` (2xx, done — including poison messages
 * that went to a dead-letter topic) or `retry` (503: EMQX retries later).
 * Handlers never make EMQX answer 500: EMQX drops the message on any status
 * other than 2xx, 429 and 503.
 */
export type EventOutcome = { kind: 'handled'; status?: 200 | 202 | 204 } | { kind: 'retry'; reason: string };

export type EventHandler = (event: EmqxEvent) => Promise<EventOutcome>;

/** Handlers by event name (`message.publish`, `client.connected`, ...). */
export type EventHandlers = Readonly<Record<string, EventHandler>>;
