import type { FastifyPluginAsync, FastifySchema } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { z } from 'zod';
import { addDirectRoute, type DirectAnswer, type DirectRoute, type DirectRoutes, type ReceivedBody } from '../../http/direct-routes.js';
import { NAMED_EXAMPLES } from '../../http/openapi.js';
import { isEmqxEvent, type EventHandlers, type EventOutcome, type UnusableEventSink } from '../../lib/emqx-event.js';

export interface EventsRoutesOptions {
  /** Where the route is served, ahead of Fastify (src/http/direct-routes.ts). */
  direct: DirectRoutes;
  handlers: EventHandlers;
  /** Where an event no handler can take goes (a dead-letter topic). */
  unusable: UnusableEventSink;
  /** The largest body that can be an event the configuration allows; a larger one is unusable, never a 413. */
  maxEventBytes: number;
  metrics: Registry;
}

const EXAMPLE_DEVICE = '6f1c7c1e-8d0b-4c1e-9a57-0c7a3b9d2f10';

/**
 * What the rules the service ships send, for the reference only: the route
 * reads any body itself, and each handler checks the fields it needs.
 */
const documentedEventSchema = z
  .looseObject({
    event: z.string().describe('The event: `message.publish`, `client.connected`, `message.delivered`, ...').meta({ examples: ['message.publish'] }),
    id: z.string().optional().describe("EMQX's message id (message events); a telemetry record's `message_id`"),
    clientid: z.string().optional(),
    username: z.string().optional(),
    topic: z.string().optional(),
    payload: z.string().optional().describe('The MQTT payload as text, or base64 when `payload_encoding` is `base64`'),
    payload_encoding: z
      .enum(['plain', 'base64'])
      .optional()
      .describe('Set by the shipped rule for the payloads it base64-encodes; absent means plain'),
    publish_received_at: z.number().int().optional().describe("Milliseconds since the epoch; a telemetry record's `received_at`"),
    client_attrs: z.record(z.string(), z.string()).optional().describe('What the authentication answer gave the session (`tenant_id`, `device_id`)'),
  })
  .meta({
    [NAMED_EXAMPLES]: {
      telemetry: {
        summary: 'A telemetry message (message.publish)',
        value: {
          event: 'message.publish',
          id: '0006263A1F8E2B4CF4420000A1B20003',
          clientid: EXAMPLE_DEVICE,
          username: EXAMPLE_DEVICE,
          topic: `devices/${EXAMPLE_DEVICE}/telemetry`,
          payload: '{"temperature":22.5,"humidity":65,"state":"running"}',
          qos: 1,
          flags: { dup: false, retain: false },
          pub_props: {},
          peerhost: '10.0.0.7',
          publish_received_at: 1795537109123,
          timestamp: 1795537109123,
          node: 'emqx@127.0.0.1',
          client_attrs: { tenant_id: 'acme', device_id: EXAMPLE_DEVICE },
          metadata: { rule_id: 'device_telemetry' },
        },
      },
      binaryTelemetry: {
        summary: 'A payload the rule base64-encoded',
        value: {
          event: 'message.publish',
          id: '0006263A1F8E2B4CF4420000A1B20004',
          clientid: EXAMPLE_DEVICE,
          username: EXAMPLE_DEVICE,
          topic: `devices/${EXAMPLE_DEVICE}/telemetry`,
          payload: 'eyJ0ZW1wZXJhdHVyZSI6MjIuNX0=',
          payload_encoding: 'base64',
          publish_received_at: 1795537109123,
        },
      },
    },
  });

const EVENTS_DESCRIPTION = `Receives one rule-engine event per request: the rule's SELECT output as JSON. 2xx means handled, including an event that went to a dead-letter topic; 503 means it may succeed later, and EMQX retries. Never 500, nor 400, 413 or 415: EMQX drops the message on any status but 2xx, 429 and 503.

**Telemetry.** \`message.publish\` on \`devices/{id}/telemetry\` is normalized into a TelemetryPoint v1 and produced to \`telemetry.raw.{tenant}\` (key = device id, acknowledged by all in-sync replicas); 204 comes only once the broker acknowledged it. The device is the \`clientid\`, which must equal the \`username\` and the topic's device segment; the tenant is the device's (cross-checked with \`client_attrs.tenant_id\` when present). A message that can never become a TelemetryPoint goes to \`telemetry.dlq.{tenant}\` (or \`telemetry.dlq.unattributed\`) and is answered 204 too. Binary payloads: the rule sends \`base64_encode(payload) as payload\` and \`'base64' as payload_encoding\`. A repeated \`id\` within the dedup window is answered 204 without producing again.

**Sessions.** \`client.connected\` and \`client.disconnected\` keep each device's session state and its \`connected\`/\`disconnected\` records on \`device.events.{tenant}\`.

**Commands.** \`message.delivered\`, \`message.acked\` and \`delivery.dropped\` on \`devices/{id}/commands\` find the command by \`pub_props.User-Property.command_id\` (else by \`id\`, EMQX's message id) and only move it forward, so repeated, reordered and early events change nothing twice; \`message.dropped\` changes nothing (the publish was already answered that nobody is subscribed). \`session.subscribed\` to a device's command topic sends its queued commands. With \`COMMAND_REPLIES=enabled\`, the replies rule posts the device's publish on \`devices/{id}/command-replies\` as event \`command.reply\`. Events for unknown commands are answered 204 and counted.

**Whatever the body.** A request no handler can take (not JSON, no event name, an event nobody here consumes, or larger than any event an allowed payload makes) is dead-lettered with its body and answered 204.`;

const EVENTS_SCHEMA: FastifySchema = {
  tags: ['emqx'],
  operationId: 'postEmqxEvent',
  summary: 'EMQX rule-engine HTTP action: one event per request',
  description: EVENTS_DESCRIPTION,
  documentedBody: documentedEventSchema,
  answers: {
    204: 'Handled: produced and acknowledged, dead-lettered, a repeat of a message already produced, or an event that changes nothing',
    503: {
      description:
        'It may succeed later, and EMQX retries. Reasons: `kafka_unavailable` (the broker did not acknowledge in time), `overloaded` (too many records waiting for the broker), `registry_unavailable` (the device could not be looked up), `postgres_unavailable` (a command event could not be recorded), `session_store_unavailable`, `device_event_not_produced`, `handler_error`',
      body: z.object({ result: z.literal('retry'), reason: z.string() }).meta({ examples: [{ result: 'retry', reason: 'kafka_unavailable' }] }),
      headers: { 'retry-after': z.literal(1).describe('Seconds') },
    },
  },
};

/**
 * Served by the direct routes, like /emqx/authn and /emqx/authz: Fastify
 * holds the route's document and hands over what it receives for it. Whatever
 * the body is, it is read there rather than refused by a parser: EMQX drops
 * an event answered 400, 413 or 415, and it must be kept instead. Errors are
 * logged at warn and above only.
 */
export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const events = new Counter({
    name: 'devicelink_emqx_events_total',
    help: 'Rule-engine events received, by event name and outcome',
    labelNames: ['event', 'outcome'] as const,
    registers: [options.metrics],
  });
  // A Map, not the object: an event named "constructor" or "toString" is no handler.
  const handlers = new Map(Object.entries(options.handlers));
  const log = app.log.child({ context: 'emqx' });

  const route: DirectRoute = {
    path: '/emqx/events',
    bodyLimit: options.maxEventBytes,
    answer: async (body): Promise<DirectAnswer> => {
      let outcome: EventOutcome;
      let name = 'unusable';
      try {
        outcome = await dispatch(body, (event) => (name = event));
      } catch (error) {
        log.error({ err: error, event: name }, 'event handler failed');
        outcome = { kind: 'retry', reason: 'handler_error' };
      }
      events.inc({ event: name, outcome: outcome.kind });
      if (outcome.kind === 'retry') return { status: 503, headers: { 'retry-after': '1' }, body: { result: 'retry', reason: outcome.reason } };
      return { status: outcome.status ?? 204 };
    },
  };
  addDirectRoute(app, options.direct, route, EVENTS_SCHEMA);

  async function dispatch(body: ReceivedBody, named: (event: string) => void): Promise<EventOutcome> {
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
    if (!isEmqxEvent(parsed)) {
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
