import type { Pool } from 'pg';
import { z } from 'zod';
import type { Clock } from '../../lib/clock.js';
import { HANDLED, type EmqxEvent, type EventHandler, type EventOutcome } from '../../lib/emqx-event.js';
import { isCommandId, isDeviceId } from '../../lib/identifiers.js';
import { commandRepliesTopic, commandsTopic } from '../../lib/mqtt-topics.js';
import type { CommandChange, CommandRepository, Transition } from './command-repository.js';
import type { CommandMetrics } from './command-metrics.js';
import { MAX_PARAMS_BYTES } from './command-schemas.js';
import { createTurnBatcher } from '../../lib/turn-batcher.js';

const COMMANDS_TOPIC = /^devices\/([^/]+)\/commands$/;

// EMQX renders values a rule selects but the event lacks as the string
// "undefined" (docs/emqx-contract.md §C), so every field is read leniently.
const deliveryEventSchema = z.looseObject({
  id: z.string().optional(),
  clientid: z.string().optional(),
  topic: z.string(),
  reason: z.string().optional(),
  pub_props: z.unknown().optional(),
});

const subscribedEventSchema = z.looseObject({ clientid: z.string(), topic: z.string() });

// EMQX sends clean_start as a boolean and connected_at in milliseconds.
const connectedEventSchema = z.looseObject({ clientid: z.string(), clean_start: z.unknown().optional(), connected_at: z.number() });

/** A shared subscription's `$share/{group}/` prefix: the filter behind it is what the device receives. */
const SHARED_PREFIX = /^\$share\/[^/+#]+\//;

const replyEventSchema = z.looseObject({
  clientid: z.string(),
  username: z.string().optional(),
  topic: z.string(),
  payload: z.string(),
  pub_props: z.unknown().optional(),
});

/** A reply names its command by MQTT 5 Correlation Data, or else by `command_id` in its JSON. */
const replySchema = z.object({
  command_id: z.uuid().optional(),
  status: z.enum(['ok', 'error']),
  result: z.unknown().optional(),
});

/** The command id a reply carries back as MQTT 5 Correlation Data (EMQX shows it in `pub_props`), if it is one. */
function correlatedCommandId(pubProps: unknown): string | null {
  if (pubProps === null || typeof pubProps !== 'object') return null;
  const data = (pubProps as Record<string, unknown>)['Correlation-Data'];
  return typeof data === 'string' && z.uuid().safeParse(data).success ? data.toLowerCase() : null;
}

/** The command id the service put into the message's MQTT 5 user properties. */
function commandIdOf(pubProps: unknown): string | null {
  if (pubProps === null || typeof pubProps !== 'object') return null;
  const userProperties = (pubProps as Record<string, unknown>)['User-Property'];
  if (userProperties === null || typeof userProperties !== 'object') return null;
  const id = (userProperties as Record<string, unknown>).command_id;
  return typeof id === 'string' && id.length > 0 && id.length <= 64 ? id : null;
}

/** Only Postgres can fail here, and it may be back when EMQX retries. */
const retry: EventOutcome = { kind: 'retry', reason: 'postgres_unavailable' };

export interface CommandEventsDeps {
  pool: Pool;
  commands: CommandRepository;
  clock: Clock;
  metrics: CommandMetrics;
  changed(rows: readonly CommandChange[]): void;
  /** The device subscribed to its command topic and has queued commands. */
  subscribed(deviceId: string): void;
}

/**
 * What EMQX tells about commands through the rule engine (docs/emqx-contract.md
 * §F): delivered, acked and dropped deliveries on devices/{id}/commands, the
 * device subscribing to that topic, and (with replies enabled) its replies.
 *
 * Events come unordered, repeated (`flags.dup` on a replay) and possibly
 * before the publish call that caused them has returned. A command is found
 * by the command_id in the message's user properties, else by EMQX's message
 * id; it only ever moves forward, so a late or repeated event changes
 * nothing. Every event is answered 2xx once handled — unknown ones included —
 * and 503 only while Postgres cannot be reached, so that EMQX retries it.
 */
export function createCommandEventHandlers(deps: CommandEventsDeps) {
  const { pool, commands, clock, metrics } = deps;

  /** The device of each command named, looked up for all the events of one turn in one statement. */
  const deviceOfCommand = createTurnBatcher<string, string | null>(async (ids) => {
    const devices = await commands.devicesOf(pool, ids);
    return ids.map((id) => devices.get(id) ?? null);
  });

  /** Whether the command a delivery event names exists (for the metrics of an event that moved nothing). */
  async function known(deviceId: string, commandId: string | null, emqxMessageId: string | null): Promise<boolean> {
    if (commandId !== null) return (await deviceOfCommand(commandId)) === deviceId;
    return emqxMessageId !== null && (await commands.findByEmqxMessageId(pool, deviceId, emqxMessageId)) !== null;
  }

  /** What one delivery event of a batch names. */
  interface Named {
    deviceId: string;
    commandId: string;
    /** EMQX's message id of the event, if it has one. */
    emqxMessageId: string | null;
  }

  /**
   * Events of one kind that name their command by its id and come in the
   * same turn of the event loop move their commands in one statement.
   */
  function batchOf(change: (at: Date) => Transition, skipLostMessage: boolean) {
    return createTurnBatcher<Named, CommandChange | null>((named) =>
      commands.transitionNamedMany(pool, named, change(new Date(clock())), {
        messageIds: Object.fromEntries(named.map((entry) => [entry.commandId, entry.emqxMessageId])),
        skipLostMessage,
      }),
    );
  }

  /**
   * A delivery event: the command it names takes the transition `change`
   * describes (`emqxMessageId`: the event's message id), found and moved in
   * one statement — with others of its kind, when it names its command id
   * (`batched`). `null` from `change`: the event moves nothing.
   */
  function deliveryHandler(
    name: string,
    change: ((event: z.output<typeof deliveryEventSchema>, at: Date) => (Transition & { when?: (param: (value: unknown) => string) => string }) | null) | null,
    batched: ((named: Named) => Promise<CommandChange | null>) | null,
  ): EventHandler {
    return async (raw: EmqxEvent) => {
      const parsed = deliveryEventSchema.safeParse(raw);
      const deviceId = parsed.success ? COMMANDS_TOPIC.exec(parsed.data.topic)?.[1] : undefined;
      if (!parsed.success || deviceId === undefined || !isDeviceId(deviceId)) {
        metrics.event(name, 'ignored');
        return HANDLED;
      }
      const event = parsed.data;
      // The receiver of a delivery is the device itself; its ACL lets no one else subscribe there.
      if (name !== 'message.dropped' && event.clientid !== deviceId) {
        metrics.event(name, 'ignored');
        return HANDLED;
      }
      const commandId = commandIdOf(event.pub_props);
      if (commandId !== null && !isCommandId(commandId)) {
        metrics.event(name, 'unmatched');
        return HANDLED;
      }
      const single = change?.(event, new Date(clock())) ?? null;
      if (!single) {
        metrics.event(name, 'ignored');
        return HANDLED;
      }
      try {
        const emqxMessageId = emqxId(event);
        const moved =
          commandId !== null && batched
            ? await batched({ deviceId, commandId, emqxMessageId })
            : await commands.transitionNamed(pool, { deviceId, commandId, emqxMessageId: commandId === null ? emqxMessageId : null }, single);
        if (moved) {
          deps.changed([moved]);
          metrics.event(name, 'applied');
        } else {
          metrics.event(name, (await known(deviceId, commandId, commandId === null ? emqxMessageId : null)) ? 'repeated' : 'unmatched');
        }
        return HANDLED;
      } catch {
        return retry;
      }
    };
  }

  const emqxId = (event: { id?: string | undefined }) => (event.id !== undefined && event.id !== 'undefined' ? event.id : null);

  // An event can come before the publish call that caused it has returned
  // (§F): a message delivered was sent, so sent_at is set here too (and an
  // earlier attempt's error no longer stands), and the publish answer only
  // fills what is still missing.
  //
  // The delivery of a message EMQX then lost with the session (the command
  // was queued again to be sent anew) is not a delivery of the command.
  const deliveredChange = (at: Date): Transition => ({
    event: 'delivered',
    reason: null,
    at,
    sets: { value: { last_error: null }, first: { sent_at: at, delivered_at: at } },
  });
  const delivered = deliveryHandler(
    'message.delivered',
    (event, at) => {
      const id = emqxId(event);
      return {
        ...deliveredChange(at),
        sets: { value: { last_error: null }, first: { sent_at: at, delivered_at: at, emqx_message_id: id } },
        ...(id !== null ? { when: (param: (value: unknown) => string) => `lost_message_id IS DISTINCT FROM ${param(id)}` } : {}),
      };
    },
    batchOf(deliveredChange, true),
  );

  const ackedChange = (at: Date): Transition => ({
    event: 'acked',
    reason: null,
    at,
    sets: { value: { last_error: null, acked_at: at }, first: { sent_at: at, delivered_at: at } },
    // A command that waits for a reply has it due response_timeout_s after the ack.
    setsSql: (param) => [`reply_due_at = ${param(at)}::timestamptz + c.response_timeout_s * interval '1 second'`],
  });
  const acked = deliveryHandler(
    'message.acked',
    (event, at) => {
      const change = ackedChange(at);
      return { ...change, sets: { ...change.sets, first: { sent_at: at, delivered_at: at, emqx_message_id: emqxId(event) } } };
    },
    batchOf(ackedChange, false),
  );

  // The session dropped the message instead of sending it: it expired in the
  // queue or in flight, or the queue was full (emqx_session_events).
  const deliveryDropped = deliveryHandler(
    'delivery.dropped',
    (event, at) => {
      if (event.reason === 'expired') return { event: 'expired_in_emqx', reason: 'expired_in_emqx', at };
      return { event: 'dropped_by_emqx', reason: (event.reason ?? 'unknown').slice(0, 64), at };
    },
    null,
  );

  // No subscriber when EMQX routed it: the publish itself answered 202, which
  // is what the dispatcher acts on. The event changes nothing.
  const messageDropped = deliveryHandler('message.dropped', null, null);

  const sessionSubscribed: EventHandler = async (raw) => {
    const parsed = subscribedEventSchema.safeParse(raw);
    // A shared subscription of the device's own command topic receives its commands too.
    if (!parsed.success || !isDeviceId(parsed.data.clientid) || parsed.data.topic.replace(SHARED_PREFIX, '') !== commandsTopic(parsed.data.clientid)) {
      metrics.event('session.subscribed', 'ignored');
      return HANDLED;
    }
    try {
      const queued = await commands.wake(pool, parsed.data.clientid, new Date(clock()));
      metrics.event('session.subscribed', queued > 0 ? 'applied' : 'repeated');
      if (queued > 0) deps.subscribed(parsed.data.clientid);
      return HANDLED;
    } catch {
      return retry;
    }
  };

  // A clean start discards the session EMQX kept, and with it every command
  // it held unacknowledged, without an event saying so: those are sent again.
  const clientConnected: EventHandler = async (raw) => {
    const parsed = connectedEventSchema.safeParse(raw);
    if (!parsed.success || !isDeviceId(parsed.data.clientid) || (parsed.data.clean_start !== true && parsed.data.clean_start !== 'true')) {
      metrics.event('client.connected', 'ignored');
      return HANDLED;
    }
    try {
      const requeued = await commands.sessionLost(pool, parsed.data.clientid, new Date(parsed.data.connected_at), new Date(clock()));
      metrics.event('client.connected', requeued.length > 0 ? 'applied' : 'repeated');
      if (requeued.length > 0) deps.changed(requeued);
      return HANDLED;
    } catch {
      return retry;
    }
  };

  const commandReply: EventHandler = async (raw) => {
    const parsed = replyEventSchema.safeParse(raw);
    const event = parsed.success ? parsed.data : null;
    if (!event || !isDeviceId(event.clientid) || event.username !== event.clientid || event.topic !== commandRepliesTopic(event.clientid)) {
      metrics.reply('invalid');
      return HANDLED;
    }
    let reply: z.output<typeof replySchema>;
    let commandId: string | undefined;
    try {
      if (Buffer.byteLength(event.payload, 'utf8') > MAX_PARAMS_BYTES + 1024) throw new Error('reply too large');
      reply = replySchema.parse(JSON.parse(event.payload));
      // The correlation data is the device's MQTT library answering the request it got: it wins over the payload.
      commandId = correlatedCommandId(event.pub_props) ?? reply.command_id?.toLowerCase();
    } catch {
      metrics.reply('invalid');
      return HANDLED;
    }
    if (commandId === undefined) {
      metrics.reply('invalid');
      return HANDLED;
    }
    try {
      const command = await commands.findById(pool, commandId);
      if (!command) {
        metrics.reply('unknown_command');
        return HANDLED;
      }
      // A device may only answer for itself; another device's command is left as it is.
      if (command.device_id !== event.clientid) {
        metrics.reply('foreign');
        return HANDLED;
      }
      if (command.response_timeout_s === null) {
        metrics.reply('unexpected');
        return HANDLED;
      }
      const at = new Date(clock());
      const moved = await commands.transitionOne(pool, command.id, {
        event: reply.status === 'ok' ? 'reply_ok' : 'reply_error',
        reason: null,
        at,
        sets: {
          value: { reply_status: reply.status, reply_result: reply.result ?? null, replied_at: at },
          first: { sent_at: at, delivered_at: at, acked_at: at },
        },
      });
      if (moved) deps.changed([moved]);
      metrics.reply(moved ? 'applied' : 'late');
      return HANDLED;
    } catch {
      return retry;
    }
  };

  return {
    delivery: {
      'message.delivered': delivered,
      'message.acked': acked,
      'delivery.dropped': deliveryDropped,
      'message.dropped': messageDropped,
      'session.subscribed': sessionSubscribed,
      'client.connected': clientConnected,
    },
    /** `command.reply`: the name the shipped replies rule gives the device's publish on devices/{id}/command-replies. */
    reply: { 'command.reply': commandReply },
  };
}
