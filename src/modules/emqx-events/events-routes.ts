import type { FastifyPluginAsync } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import { emqxEventSchema, type EmqxEvent, type EventHandlers, type EventOutcome } from '../../lib/emqx-event.js';

export interface EventsRoutesOptions {
  handlers: EventHandlers;
  metrics: Registry;
}

export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const events = new Counter({
    name: 'emqx_events_total',
    help: 'Rule-engine events received, by event name and outcome',
    labelNames: ['event', 'outcome'] as const,
    registers: [options.metrics],
  });
  // A Map, not the object: an event named "constructor" or "toString" is no handler.
  const handlers = new Map(Object.entries(options.handlers));

  app.withTypeProvider<ZodTypeProvider>().post(
    '/emqx/events',
    { schema: { body: emqxEventSchema }, logLevel: 'warn' },
    async (request, reply) => {
      const event = request.body as EmqxEvent;
      const handler = handlers.get(event.event);
      if (!handler) {
        // Answered 2xx so EMQX does not retry an event nobody here consumes.
        events.inc({ event: 'unknown', outcome: 'ignored' });
        return reply.code(204).send();
      }
      let outcome: EventOutcome;
      try {
        outcome = await handler(event);
      } catch (error) {
        request.log.error({ err: error, event: event.event, requestId: String(request.id) }, 'event handler failed');
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
