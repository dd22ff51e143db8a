import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { createSeriesCounter } from '../../http/metrics.js';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';

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

export interface EventsRoutesOptions {
  /** Handlers by event name (`message.publish`, `client.connected`, ...). */
  handlers: Readonly<Record<string, EventHandler>>;
  metrics: Registry;
}

export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const events = createSeriesCounter(options.metrics, {
    name: 'emqx_events_total',
    help: 'Rule-engine events received, by event name and outcome',
    labelNames: ['event', 'outcome'] as const,
  });
  const known = new Set(Object.keys(options.handlers));

  app.withTypeProvider<ZodTypeProvider>().post(
    '/emqx/events',
    { schema: { body: emqxEventSchema }, logLevel: 'warn' },
    async (request, reply) => {
      const event = request.body as EmqxEvent;
      const handler = options.handlers[event.event];
      if (!handler) {
        // Answered 2xx so EMQX does not retry an event nobody here consumes.
        events.inc({ event: known.has(event.event) ? event.event : 'unknown', outcome: 'ignored' });
        return reply.code(204).send();
      }
      let outcome: EventOutcome;
      try {
        outcome = await handler(event);
      } catch (error) {
        request.log.error({ err: error, event: event.event }, 'event handler failed');
        outcome = { kind: 'retry', reason: 'handler_error' };
      }
      events.inc({ event: event.event, outcome: outcome.kind });
      if (outcome.kind === 'retry') {
        return reply.code(503).header('retry-after', '1').send({ result: 'retry', reason: outcome.reason });
      }
      return reply.code(outcome.status ?? 204).send();
    },
  );
};
