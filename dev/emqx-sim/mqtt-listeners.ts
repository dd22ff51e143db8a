import { once } from 'node:events';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AuthenticateError, type Client, type ConnectPacket, type PublishPacket } from 'aedes';
import type { AuthnDecision } from './auth-answers.js';
import { CONNACK, DISCONNECT_REASONS, SESSION, SUBACK_FAILURE } from './emqx-facts.js';
import type { SimLog } from './log.js';
import type { Message, Session, SessionRegistry } from './sessions.js';
import type { Values } from './templates.js';

/** What the MQTT listeners ask of the rest of the simulation. */
export interface MqttCore {
  readonly sessions: SessionRegistry;
  /** `authorization.deny_action = disconnect`: a refused publish or subscribe ends the connection. */
  readonly disconnectOnDeny: boolean;
  /** The authenticator chain's decision for a CONNECT. */
  authenticate(values: { clientid: string; username: string; password: string; peerhost: string }): Promise<AuthnDecision>;
  authorize(session: Session, action: 'publish' | 'subscribe', topic: string, qos: number, retain: boolean): Promise<'allow' | 'deny'>;
  /** Builds the session of a client the authenticator let in (not connected yet). */
  admit(client: Client, decision: Extract<AuthnDecision, { result: 'allow' }>, connection: ConnectionFacts): Session;
  /** The client is ready: the session is the client id's live one. */
  open(session: Session): void;
  /** The connection ended with `reason`. */
  end(session: Session, reason: string): void;
  subscribed(session: Session, filter: string, qos: number): void;
  unsubscribed(session: Session, filter: string): void;
  /** A message a client published (not yet routed). */
  received(session: Session, packet: PublishPacket, denied: boolean): Message;
  /** aedes routed the client's message to its own subscribers: the rest is the simulation's. */
  routed(message: Message): void;
  /** A message is about to go out to the session's client: its delivery event, or null when the session drops it. */
  forward(session: Session, message: Message, qos: number, dup: boolean): Values | null;
  acked(session: Session, delivery: Values): void;
}

/** What a connection tells about its client before it authenticates. */
export interface ConnectionFacts {
  readonly listener: 'tcp' | 'ssl';
  readonly username: string;
  readonly peerhost: string;
  readonly peername: string;
  readonly sockname: string;
  readonly keepalive: number;
}

export interface MqttListenerOptions {
  readonly host: string;
  readonly port: number;
}

export interface MqttsListenerOptions extends MqttListenerOptions {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

export interface MqttListeners {
  readonly tcpPort: number | null;
  readonly sslPort: number | null;
  /** Routes a message that did not come from an MQTT client to the MQTT clients subscribed to it. */
  publish(message: Message): void;
  /** Ends a client's connection (kick, takeover); its session ends with `session.reason`. */
  close(session: Session): void;
  /** Disconnects every client (their disconnect events are raised) and stops listening. */
  stop(): Promise<void>;
}

function withoutMappedPrefix(address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:/, '');
}

function endpoint(address: string | undefined, port: number | undefined): string {
  const host = withoutMappedPrefix(address);
  return host.includes(':') ? `[${host}]:${port ?? 0}` : `${host}:${port ?? 0}`;
}

/**
 * Watches the bytes aedes reads from a connection for an MQTT DISCONNECT
 * packet (type 14): how a normal end is told from a dropped socket, which
 * aedes's events do not tell apart. Only the fixed headers are read; bodies
 * are skipped by their remaining length.
 */
function disconnectWatcher(onDisconnect: () => void): (chunk: Buffer) => void {
  let state: 'type' | 'length' | 'body' = 'type';
  let type = 0;
  let length = 0;
  let multiplier = 1;
  let remaining = 0;
  return (chunk) => {
    let at = 0;
    while (at < chunk.length) {
      if (state === 'type') {
        type = (chunk[at] as number) >> 4;
        at += 1;
        state = 'length';
        length = 0;
        multiplier = 1;
      } else if (state === 'length') {
        const byte = chunk[at] as number;
        at += 1;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          if (type === 14) onDisconnect();
          remaining = length;
          state = remaining > 0 ? 'body' : 'type';
        }
      } else {
        const skipped = Math.min(remaining, chunk.length - at);
        at += skipped;
        remaining -= skipped;
        if (remaining === 0) state = 'type';
      }
    }
  };
}

/**
 * MQTT 3.1 and 3.1.1 over TCP and TLS, on aedes's public API: its
 * authentication and authorization handlers ask the core as EMQX asks its
 * authenticator chain and authorization sources, and its events become the
 * sessions' events.
 */
export async function startMqttListeners(options: {
  readonly core: MqttCore;
  readonly tcp?: MqttListenerOptions;
  readonly ssl?: MqttsListenerOptions;
  readonly log: SimLog;
}): Promise<MqttListeners> {
  const { core, log } = options;
  const sessionOf = new WeakMap<Client, Session>();
  const connections = new WeakMap<Client, { listener: 'tcp' | 'ssl'; conn: Socket; disconnected: boolean; keepalive: number; timedOut: boolean }>();
  /** Each routed message, keyed by its packet's `properties` object: aedes carries that object into every copy it queues and delivers. */
  const messages = new WeakMap<object, Message>();

  const broker = await Aedes.createBroker({
    maxClientsIdLength: SESSION.maxClientIdLength,
    preConnect(client, packet: ConnectPacket, callback) {
      const connection = connections.get(client);
      if (connection) connection.keepalive = packet.keepalive ?? 0;
      callback(null, true);
    },
    authenticate(client, username, password, callback) {
      const connection = connections.get(client);
      if (!connection) return callback(Object.assign(new Error('no connection'), { returnCode: CONNACK.serverUnavailable }) as AuthenticateError, false);
      const peerhost = withoutMappedPrefix(connection.conn.remoteAddress);
      core.authenticate({ clientid: client.id, username: username ?? '', password: password?.toString('utf8') ?? '', peerhost }).then(
        (decision) => {
          if (decision.result !== 'allow') {
            const why = decision.result === 'ignore' ? ` (every authenticator ignored: ${decision.why})` : '';
            log.info(`${client.id}: connect refused, not authorized${why}`);
            return callback(Object.assign(new Error('not authorized'), { returnCode: CONNACK.notAuthorized }) as AuthenticateError, false);
          }
          const session = core.admit(client, decision, {
            listener: connection.listener,
            username: username ?? '',
            peerhost,
            peername: endpoint(connection.conn.remoteAddress, connection.conn.remotePort),
            sockname: endpoint(connection.conn.localAddress, connection.conn.localPort),
            keepalive: connection.keepalive,
          });
          sessionOf.set(client, session);
          callback(null, true);
        },
        (error: unknown) => {
          log.warn(`authentication of ${client.id} failed: ${error instanceof Error ? error.message : String(error)}`);
          callback(Object.assign(new Error('server unavailable'), { returnCode: CONNACK.serverUnavailable }) as AuthenticateError, false);
        },
      );
    },
    authorizePublish(client, packet, callback) {
      if (!client) return callback(null);
      if (packet.topic.startsWith('$SYS/')) return callback(new Error('$SYS topics are reserved'));
      const session = sessionOf.get(client);
      if (!session) return callback(new Error('not authenticated'));
      void core.authorize(session, 'publish', packet.topic, packet.qos, packet.retain).then((decision) => {
        if (decision === 'deny') log.info(`${session.clientid}: publish to ${packet.topic} denied`);
        if (decision === 'deny' && core.disconnectOnDeny) return callback(new Error('not authorized'));
        // With deny_action = ignore the publish is acknowledged and goes nowhere: never retained, never forwarded.
        if (decision === 'deny') packet.retain = false;
        packet.properties ??= {};
        messages.set(packet.properties, core.received(session, packet, decision === 'deny'));
        callback(null);
      });
    },
    authorizeSubscribe(client, subscription, callback) {
      const session = sessionOf.get(client);
      if (!session) return callback(new Error('not authenticated'));
      void core.authorize(session, 'subscribe', subscription.topic, subscription.qos, false).then((decision) => {
        if (decision === 'allow') return callback(null, subscription);
        log.info(`${session.clientid}: subscribe to ${subscription.topic} denied`);
        if (core.disconnectOnDeny) return callback(new Error('not authorized'));
        callback(null, null);
      });
    },
    published(packet, client, callback) {
      callback(null);
      const message = client && packet.properties ? messages.get(packet.properties) : undefined;
      if (message && !message.denied) core.routed(message);
    },
    authorizeForward(client, packet) {
      const message = packet.properties ? messages.get(packet.properties) : undefined;
      const session = sessionOf.get(client);
      if (!message || !session) return packet;
      if (message.denied) return null;
      const qos = Math.min(packet.qos, core.sessions.grantedQos(session, packet.topic) ?? 0);
      const delivery = core.forward(session, message, qos, packet.dup);
      if (!delivery) return null;
      // Acknowledged (PUBACK, or PUBREC for QoS 2) later: message.acked then.
      if (qos > 0 && session.link.kind === 'mqtt') session.link.unacked.push(delivery);
      return packet;
    },
  });

  broker.on('keepaliveTimeout', (client) => {
    const connection = connections.get(client);
    if (connection) connection.timedOut = true;
  });
  broker.on('ack', (_packet, client) => {
    const session = client ? sessionOf.get(client) : undefined;
    const delivery = session?.link.kind === 'mqtt' ? session.link.unacked.shift() : undefined;
    if (session && delivery) core.acked(session, delivery);
  });
  broker.on('clientReady', (client) => {
    const session = sessionOf.get(client);
    if (session) core.open(session);
  });
  broker.on('clientDisconnect', (client) => {
    const session = sessionOf.get(client);
    const connection = connections.get(client);
    if (!session?.connected || !connection) return;
    const closed = connection.listener === 'ssl' ? DISCONNECT_REASONS.sslClosed : DISCONNECT_REASONS.tcpClosed;
    const reason = session.reason ?? (connection.disconnected ? DISCONNECT_REASONS.normal : connection.timedOut ? DISCONNECT_REASONS.keepaliveTimeout : closed);
    core.end(session, reason);
  });
  broker.on('subscribe', (subscriptions, client) => {
    const session = sessionOf.get(client);
    if (!session) return;
    for (const { topic, qos } of subscriptions) if ((qos as number) !== SUBACK_FAILURE) core.subscribed(session, topic, qos);
  });
  broker.on('unsubscribe', (topics, client) => {
    const session = sessionOf.get(client);
    if (session) for (const topic of topics) core.unsubscribed(session, topic);
  });

  const sockets = new Set<Socket>();
  function accept(listener: 'tcp' | 'ssl') {
    return (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      const client = broker.handle(socket);
      const connection = { listener, conn: socket, disconnected: false, keepalive: 0, timedOut: false };
      connections.set(client, connection);
      // After handle(): aedes reads through 'readable', so this sees exactly what it reads.
      socket.on('data', disconnectWatcher(() => (connection.disconnected = true)));
    };
  }

  const servers: Server[] = [];
  async function listen(server: Server, at: MqttListenerOptions): Promise<number> {
    servers.push(server);
    server.listen(at.port, at.host);
    await once(server, 'listening');
    const address = server.address();
    return typeof address === 'object' && address ? address.port : at.port;
  }
  const stop = async () => {
    for (const server of servers) server.close();
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
  };

  try {
    const tcpPort = options.tcp ? await listen(createTcpServer(accept('tcp')), options.tcp) : null;
    const sslPort = options.ssl ? await listen(createTlsServer({ cert: options.ssl.cert, key: options.ssl.key }, accept('ssl')), options.ssl) : null;
    return {
      tcpPort,
      sslPort,
      publish(message) {
        const packet: PublishPacket = { cmd: 'publish', topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain, dup: false, properties: {} };
        messages.set(packet.properties as object, message);
        broker.publish(packet, (error) => {
          if (error) log.warn(`routing ${message.topic} to MQTT clients failed: ${error.message}`);
        });
      },
      close(session) {
        if (session.link.kind === 'mqtt') session.link.client.close();
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
