import type { IncomingMessage } from 'node:http';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { emqxEventSchema, type EmqxEvent, type EventHandlers, type EventOutcome, type UnusableEventSink } from '../../lib/emqx-event.js';

export interface EventsRoutesOptions {
  handlers: EventHandlers;
  /** Where an event no handler can take goes (a dead-letter topic). */
  unusable: UnusableEventSink;
  /** The largest body that can be an event the configuration allows; a larger one is unusable, never a 413. */
  maxEventBytes: number;
  metrics: Registry;
}

/** A request body read whole up to `limit` bytes; beyond that only its size is counted. */
interface BoundedBody {
  readonly bytes: Buffer;
  readonly size: number;
  readonly complete: boolean;
}

function readBounded(stream: IncomingMessage, limit: number): Promise<BoundedBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let kept = 0;
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (kept >= limit) return;
      const part = kept + chunk.length > limit ? chunk.subarray(0, limit - kept) : chunk;
      chunks.push(part);
      kept += part.length;
    });
    stream.on('end', () => resolve({ bytes: Buffer.concat(chunks, kept), size, complete: size <= limit }));
    stream.on('error', reject);
  });
}

const isEvent = (value: unknown): value is EmqxEvent => emqxEventSchema.safeParse(value).success;

export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const events = new Counter({
    name: 'emqx_events_total',
    help: 'Rule-engine events received, by event name and outcome',
    labelNames: ['event', 'outcome'] as const,
    registers: [options.metrics],
  });
  // A Map, not the object: an event named "constructor" or "toString" is no handler.
  const handlers = new Map(Object.entries(options.handlers));

  // Whatever the body is, it is read here rather than refused by a parser:
  // EMQX drops an event answered 400, 413 or 415, and it must be kept instead.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request: FastifyRequest, payload: IncomingMessage) => readBounded(payload, options.maxEventBytes));

  app.post('/emqx/events', { logLevel: 'warn' }, async (request, reply) => {
    const body = request.body as BoundedBody | null;
    const raw = body ?? { bytes: Buffer.alloc(0), size: 0, complete: true };
    let outcome: EventOutcome;
    let name = 'unusable';
    try {
      outcome = await dispatch(raw, (event) => (name = event));
    } catch (error) {
      request.log.error({ err: error, event: name, requestId: String(request.id) }, 'event handler failed');
      outcome = { kind: 'retry', reason: 'handler_error' };
    }
    events.inc({ event: name, outcome: outcome.kind });
    if (outcome.kind === 'retry') {
      return reply.code(503).header('retry-after', '1').send({ result: 'retry', reason: outcome.reason });
    }
    return reply.code(outcome.status ?? 204).send();
  });

  async function dispatch(body: BoundedBody, named: (event: string) => void): Promise<EventOutcome> {
    const { bytes, size } = body;
    if (!body.complete) {
      return options.unusable({ reason: 'event_too_large', detail: `an event of ${size} bytes, more than the ${options.maxEventBytes} any allowed payload makes`, body: bytes, size, event: null });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch {
      return options.unusable({ reason: 'invalid_event', detail: 'the body is not JSON', body: bytes, size, event: null });
    }
    if (!isEvent(parsed)) {
      return options.unusable({ reason: 'invalid_event', detail: 'the body is not an object naming its event', body: bytes, size, event: null });
    }
    const handler = handlers.get(parsed.event);
    if (!handler) {
      return options.unusable({ reason: 'unknown_event', detail: `no handler for event ${JSON.stringify(parsed.event)}`, body: bytes, size, event: parsed });
    }
    named(parsed.event);
    return handler(parsed);
  }
};
