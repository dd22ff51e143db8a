import type { IClientOptions, IPublishPacket, MqttClient } from 'mqtt';

export interface MqttSubscriptionOptions {
  /** mqtt:// or mqtts:// */
  url: string;
  username: string;
  password: string;
  /** The CA to trust over mqtts:// (else the system's). */
  ca?: string;
  /** Each client's id is `{clientId}-{n}`: the same after a restart, so the broker resumes its session. */
  clientId: string;
  clients: number;
  /** The topic filter each client subscribes to (a shared subscription). */
  filter: string;
  /** Messages the broker may have in flight to a client before it waits for acknowledgements. */
  receiveMaximum: number;
  /** How long the broker keeps a disconnected client's session (its unacknowledged messages). */
  sessionExpiryS: number;
  /** Reconnection backoff: first delay, doubled on each failure up to the largest. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  log: SubscriptionLogger;
}

export interface SubscriptionLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

/** One QoS 1 message as a client received it. */
export interface ReceivedPublish {
  /** Which client (0-based), and which connection of it: packet ids are a connection's session's. */
  client: number;
  topic: string;
  payload: Buffer;
  packetId: number;
  /** The broker says it may have sent this packet before (a redelivery after a reconnection). */
  dup: boolean;
  /** The first `message_id` user property, when the publisher set one. */
  messageIdProperty: string | null;
}

export interface ConnectionEvents {
  /** A client (re)connected; without `sessionPresent` the broker forgot what it had in flight to it. */
  connected(client: number, sessionPresent: boolean): void;
  /**
   * A message to acknowledge with `ack()` once it is safe with the service's
   * store. An ack whose connection has closed meanwhile is not sent: the
   * broker delivers the message again on the next one.
   */
  message(publish: ReceivedPublish, ack: () => void): void;
}

export interface MqttSubscription {
  /** Connects every client; resolves once each has connected and subscribed once, or rejects after `timeoutMs`. */
  start(timeoutMs: number): Promise<void>;
  /** Connected clients. */
  readonly connected: number;
  /** Leaves the shared subscription: the broker sends the group's messages to the other members from now on. */
  unsubscribe(): Promise<void>;
  /**
   * Disconnects. With `endSessions` the broker forgets the sessions (after a
   * clean drain: an idle session would otherwise keep getting its share of
   * the group's messages until it expires); without, it keeps them, and what
   * is not acknowledged is delivered again when the clients come back.
   */
  stop(endSessions: boolean): Promise<void>;
}

const DEFAULT_RECONNECT_MIN_MS = 250;
const DEFAULT_RECONNECT_MAX_MS = 10_000;
const ignoreClientLog = () => undefined;
/** A PUBACK's fixed header (type 4, flags 0) and remaining length without reason code or properties. */
const PUBACK_TYPE = 0x40;
const PUBACK_REMAINING_LENGTH = 2;
const PUBACK_BYTES = 4;

function messageIdProperty(packet: IPublishPacket): string | null {
  const value = packet.properties?.userProperties?.message_id;
  const first = Array.isArray(value) ? value[0] : value;
  return typeof first === 'string' && first !== '' ? first : null;
}

/**
 * MQTT 5 clients of the broker, each with a persistent session and the
 * subscription: QoS 1 messages are acknowledged (PUBACK) only when the
 * caller says so, several at a time up to the Receive Maximum, so the
 * broker holds back once that many are unacknowledged. A lost connection is
 * retried with exponential backoff, resuming the session.
 */
export function createMqttSubscription(options: MqttSubscriptionOptions, events: ConnectionEvents): MqttSubscription {
  const minMs = options.reconnectMinMs ?? DEFAULT_RECONNECT_MIN_MS;
  const maxMs = options.reconnectMaxMs ?? DEFAULT_RECONNECT_MAX_MS;
  const clients: MqttClient[] = [];
  let stopped = false;

  function connect(mqtt: typeof import('mqtt'), index: number): MqttClient {
    /** Counts this client's connections: an ack of an earlier one is not sent on a later one. */
    let connection = 0;
    /** Messages of this connection received and not yet acknowledged. */
    let unacknowledged = 0;
    /** Reading the next packet, when it waits for an acknowledgement to make room. */
    let readNext: (() => void) | null = null;
    /**
     * The Receive Maximum kept on this side too: once a broker has sent more
     * unacknowledged messages than it allows (Mosquitto 2.0 does, under load),
     * nothing more is read from it until acknowledgements make room, so what
     * the service holds stays bounded whatever the broker does; the socket's
     * own backpressure holds the broker back. A broker that keeps to the
     * maximum (EMQX) never sends the one over it, so reading never stops
     * there, and its pings are answered however long Kafka is down.
     */
    const withinMaximum = () => unacknowledged <= options.receiveMaximum;
    const acknowledged = () => {
      unacknowledged--;
      if (readNext !== null && withinMaximum()) {
        const next = readNext;
        readNext = null;
        next();
      }
    };
    /** A new connection starts with nothing unacknowledged, and its own reading. */
    const newConnection = () => {
      connection++;
      unacknowledged = 0;
      readNext = null;
    };
    /**
     * The PUBACKs of one turn of the event loop (those of one Kafka batch)
     * leave in one write of their own bytes, in the order they were given.
     * A PUBACK with reason Success and no properties is 4 bytes in MQTT 5
     * (type, remaining length 2, packet id: the reason code and properties
     * may be omitted), the bytes mqtt.js writes for it too; mqtt.js writes
     * each in three pieces, after its packet events and logging.
     */
    let acks: number[] = [];
    const writeAcks = (stream: MqttClient['stream']) => {
      const ids = acks;
      acks = [];
      // A stream closed or replaced meanwhile: the broker sends those messages again.
      if (stream !== client.stream || stream.destroyed) return;
      const bytes = Buffer.allocUnsafe(ids.length * PUBACK_BYTES);
      ids.forEach((id, index) => {
        const at = index * PUBACK_BYTES;
        bytes[at] = PUBACK_TYPE;
        bytes[at + 1] = PUBACK_REMAINING_LENGTH;
        bytes.writeUInt16BE(id, at + 2);
      });
      stream.write(bytes);
    };
    const acknowledge = (packetId: number) => {
      if (acks.length === 0) process.nextTick(writeAcks, client.stream);
      acks.push(packetId);
    };
    const settings: IClientOptions = {
      protocolVersion: 5,
      clientId: `${options.clientId}-${index}`,
      username: options.username,
      password: options.password,
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
      clean: false,
      keepalive: 30,
      connectTimeout: 10_000,
      reconnectPeriod: minMs,
      resubscribe: false,
      properties: { sessionExpiryInterval: options.sessionExpiryS, receiveMaximum: options.receiveMaximum },
      customHandleAcksConcurrent: true,
      // mqtt.js logs each packet through the `debug` module, which allocates
      // its arguments even when disabled; the subscription's own events are
      // logged here instead.
      log: ignoreClientLog,
      customHandleAcksReadNext(next) {
        if (withinMaximum()) next();
        else readNext = next;
      },
      // QoS 1 messages are acknowledged here (acknowledge), not through `done`.
      customHandleAcks(topic, payload, packet, done) {
        if (packet.qos === 0) return done(0);
        const at = connection;
        const packetId = packet.messageId ?? 0;
        unacknowledged++;
        events.message(
          {
            client: index,
            topic,
            payload,
            packetId,
            dup: packet.dup,
            messageIdProperty: messageIdProperty(packet),
          },
          () => {
            if (at !== connection) return;
            if (client.connected && !stopped) acknowledge(packetId);
            acknowledged();
          },
        );
      },
    };
    const client = mqtt.connect(options.url, settings);
    client.on('connect', (connack) => {
      newConnection();
      client.options.reconnectPeriod = minMs;
      const sessionPresent = connack.sessionPresent;
      events.connected(index, sessionPresent);
      // Resubscribing when the session is present changes nothing and costs a round trip.
      if (!sessionPresent) {
        client.subscribe(options.filter, { qos: 1 }, (error, granted) => {
          const code = granted?.[0]?.qos;
          if (error || code === undefined || code > 2) {
            options.log.warn({ client: index, filter: options.filter, reasonCode: code }, 'the broker refused the telemetry subscription');
            // A new connection tries again.
            client.stream.destroy();
          } else {
            client.emit('subscribed' as 'connect', connack);
          }
        });
      } else {
        client.emit('subscribed' as 'connect', connack);
      }
    });
    client.on('close', () => {
      newConnection();
      // Exponential backoff: the next attempt waits twice as long, up to the largest delay.
      client.options.reconnectPeriod = Math.min(maxMs, Math.max(minMs, (client.options.reconnectPeriod ?? minMs) * 2));
    });
    client.on('error', (error) => {
      options.log.warn({ client: index, err: { message: error.message, code: (error as { code?: unknown }).code } }, 'telemetry subscription error');
    });
    return client;
  }

  return {
    async start(timeoutMs) {
      // Loaded only when the mode is on: the MQTT client costs memory a webhook-only replica has no use for.
      const mqtt = await import('mqtt');
      for (let index = 0; index < options.clients; index++) clients.push(connect(mqtt, index));
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.all(clients.map((client) => new Promise<void>((resolve) => client.once('subscribed' as 'connect', () => resolve())))),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`the broker did not accept the telemetry subscription within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
      } finally {
        clearTimeout(timer);
      }
      options.log.info({ clients: options.clients, filter: options.filter }, 'telemetry subscription started');
    },
    get connected() {
      return clients.filter((client) => client.connected).length;
    },
    async unsubscribe() {
      await Promise.all(
        clients.map(async (client) => {
          if (!client.connected) return;
          await client.unsubscribeAsync(options.filter).catch((error: unknown) => options.log.warn({ err: error }, 'could not leave the telemetry subscription'));
        }),
      );
    },
    async stop(endSessions) {
      stopped = true;
      await Promise.all(
        clients.map((client) => client.endAsync(false, endSessions ? { reasonCode: 0, properties: { sessionExpiryInterval: 0 } } : {})),
      );
    },
  };
}
