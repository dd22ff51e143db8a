import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { createDependencyState, type DependencyLogger, type DependencyState } from '../lib/dependency-state.js';
import { withTimeout } from '../lib/with-timeout.js';

/** A connection to Redis, whichever way it is deployed: commands are the same, keys of one call must share a hash slot on a cluster. */
export type RedisConnection = Redis | Cluster;

export interface RedisAddress {
  readonly host: string;
  readonly port: number;
}

/** How Redis is deployed: one node (or a managed primary endpoint), a Redis Cluster, or a primary that Sentinels follow. */
export type RedisTopology =
  | { readonly kind: 'single'; readonly url: string }
  | { readonly kind: 'cluster'; readonly nodes: readonly RedisAddress[] }
  | {
      readonly kind: 'sentinel';
      readonly sentinels: readonly RedisAddress[];
      /** The name the Sentinels monitor the primary under. */
      readonly masterName: string;
      /** The Sentinels' own password (their `requirepass`); null when they have none. */
      readonly sentinelPassword: string | null;
    };

export interface RedisSettings {
  /** Prefix of every key and channel this service uses (isolates deployments and tests). */
  readonly keyPrefix: string;
  readonly topology: RedisTopology;
  /** ACL user and password of the data nodes; absent or null = none (or what a single node's URL carries). */
  readonly username?: string | null;
  readonly password?: string | null;
  /** TLS to every Redis process (nodes, primary and replicas, Sentinels), trusting `ca` when given (else the system's CAs); null = plaintext, unless the URL is rediss://. */
  readonly tls?: { readonly ca?: string } | null;
}

export interface RedisClient {
  /** Commands. Fails fast while Redis is unreachable instead of queueing without bound. */
  readonly redis: RedisConnection;
  /** Prefix of every key and channel this service uses (isolates deployments and tests). */
  readonly keyPrefix: string;
  readonly state: DependencyState;
  /** A separate connection in subscriber mode (created on first use). */
  subscriber(): RedisConnection;
  ping(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** The longest a command waits, reconnects, redirections and a failover's first moments included. */
const COMMAND_TIMEOUT_MS = 1000;
const CONNECT_TIMEOUT_MS = 2000;
/** What close() gives QUIT before it drops the connections. */
const QUIT_TIMEOUT_MS = 1000;
const retryStrategy = (attempt: number) => Math.min(50 * 2 ** attempt, 2000);

// A primary demoted under a live connection answers writes READONLY until the
// connection is made again; reconnecting (to what the Sentinels, or the
// managed endpoint, now name) and resending is safe, as the write did not happen.
const reconnectOnReadOnly = (error: Error) => (error.message.startsWith('READONLY') ? 2 : false);

/**
 * A cluster client whose every command fails within the command timeout, as
 * a single node's does: a cluster otherwise holds commands without limit
 * while no node answers, and redirects them for a while after a node fails.
 */
class FailFastCluster extends Cluster {
  override sendCommand(...args: Parameters<Cluster['sendCommand']>): unknown {
    args[0].setTimeout(COMMAND_TIMEOUT_MS);
    return super.sendCommand(...args);
  }
}

type Purpose = 'commands' | 'subscriber';

function credentials(settings: RedisSettings): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  return {
    ...(settings.username ? { username: settings.username } : {}),
    ...(settings.password ? { password: settings.password } : {}),
    ...(settings.tls ? { tls: { ...settings.tls } } : {}),
  };
}

/** Options of one connection to a Redis process; a subscriber waits for Redis however long it takes, commands do not. */
function nodeOptions(settings: RedisSettings, purpose: Purpose): RedisOptions {
  return {
    // A command waits for at most one reconnect attempt; the hot paths treat the
    // resulting error as "Redis unavailable" and degrade rather than hang.
    maxRetriesPerRequest: purpose === 'commands' ? 1 : null,
    ...(purpose === 'commands' ? { commandTimeout: COMMAND_TIMEOUT_MS } : {}),
    connectTimeout: CONNECT_TIMEOUT_MS,
    enableAutoPipelining: true,
    ...credentials(settings),
  };
}

function connect(settings: RedisSettings, purpose: Purpose): RedisConnection {
  const topology = settings.topology;
  switch (topology.kind) {
    case 'single':
      return new Redis(topology.url, { ...nodeOptions(settings, purpose), retryStrategy, reconnectOnError: reconnectOnReadOnly, lazyConnect: false });
    case 'sentinel':
      return new Redis({
        ...nodeOptions(settings, purpose),
        sentinels: topology.sentinels.map(({ host, port }) => ({ host, port })),
        name: topology.masterName,
        ...(topology.sentinelPassword ? { sentinelPassword: topology.sentinelPassword } : {}),
        ...(settings.tls ? { enableTLSForSentinelMode: true, sentinelTLS: { ...settings.tls } } : {}),
        sentinelCommandTimeout: COMMAND_TIMEOUT_MS,
        // Told of a failover by the Sentinels at once, rather than when the old primary's connection breaks.
        failoverDetector: true,
        retryStrategy,
        reconnectOnError: reconnectOnReadOnly,
        lazyConnect: false,
      });
    case 'cluster': {
      const { tls, ...redisOptions } = nodeOptions(settings, purpose);
      const options: ClusterOptions = {
        clusterRetryStrategy: retryStrategy,
        enableAutoPipelining: true,
        redisOptions: { ...redisOptions, ...(tls ? { tls } : {}) },
        // Nodes announced by name keep that name, so their certificates match it.
        ...(tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
        lazyConnect: false,
      };
      const nodes = topology.nodes.map(({ host, port }) => ({ host, port }));
      return purpose === 'commands' ? new FailFastCluster(nodes, options) : new Cluster(nodes, options);
    }
  }
}

/** Answers when every primary answers: on a cluster each primary holds a share of the keys. */
async function pingAll(connection: RedisConnection): Promise<void> {
  const primaries = connection instanceof Cluster ? connection.nodes('master') : [];
  await Promise.all(primaries.length > 0 ? primaries.map((node) => node.ping()) : [connection.ping()]);
}

async function quit(connection: RedisConnection | undefined): Promise<void> {
  if (!connection) return;
  // QUIT waits for replies; a node that went away meanwhile would make it wait for ever.
  if (connection.status === 'ready') await withTimeout(connection.quit(), QUIT_TIMEOUT_MS, 'redis quit').catch(() => undefined);
  // Also after QUIT: it leaves the connections to the Sentinels that watch for a failover open.
  connection.disconnect();
}

export function createRedis(settings: RedisSettings, logger: DependencyLogger): RedisClient {
  const state = createDependencyState('redis', logger);
  const redis = connect(settings, 'commands');
  redis.on('error', (error) => state.down(error));
  // A cluster reports a node it cannot reach apart from the cluster as a whole.
  redis.on('node error', (error: unknown, node: unknown) => state.down(error, { node: String(node) }));
  redis.on('ready', () => state.up());

  let subscriber: RedisConnection | undefined;
  return {
    redis,
    keyPrefix: settings.keyPrefix,
    state,
    subscriber() {
      if (!subscriber) {
        subscriber = connect(settings, 'subscriber');
        subscriber.on('error', (error) => state.down(error, { connection: 'subscriber' }));
      }
      return subscriber;
    },
    async ping(timeoutMs) {
      try {
        await withTimeout(pingAll(redis), timeoutMs, 'redis ping');
        state.up();
      } catch (error) {
        state.down(error);
        throw error;
      }
    },
    async close() {
      await Promise.all([quit(redis), quit(subscriber)]);
    },
  };
}
