import { randomBytes } from 'node:crypto';
import type { Client } from 'aedes';
import type { Values } from './templates.js';
import type { AclRule } from './acl.js';

/** One MQTT connection that authentication let in. */
export interface Session {
  readonly client: Client;
  readonly clientid: string;
  readonly username: string;
  readonly peerhost: string;
  readonly peername: string;
  readonly sockname: string;
  readonly keepalive: number;
  readonly cleanStart: boolean;
  readonly superuser: boolean;
  readonly clientAttrs: Readonly<Record<string, string>>;
  readonly acl: readonly AclRule[];
  connectedAt: number;
  connected: boolean;
  /**
   * The delivery events of the QoS 1 and 2 messages sent to this connection
   * and not yet acknowledged, oldest first: aedes reports an acknowledgement
   * of a clean session without the message, and MQTT clients acknowledge in
   * the order they received.
   */
  unacked: Values[];
  /** Why the broker closes it (kick, takeover, expiry); unset when the client or the network ends it. */
  reason?: string;
  expiry?: NodeJS.Timeout;
  /** Topic filter → granted QoS. */
  readonly subscriptions: Map<string, number>;
}

/** A clean_session=false session whose connection ended: EMQX keeps it (and its subscriptions) until it expires. */
export interface OfflineSession {
  readonly clientid: string;
  readonly username: string;
  readonly connectedAt: number;
  readonly disconnectedAt: number;
  readonly subscriptions: Map<string, number>;
}

/** An EMQX message id: 16 random bytes in upper-case hex. */
export const messageId = () => randomBytes(16).toString('hex').toUpperCase();
