import { Redis } from 'ioredis';
import { createDependencyState, type DependencyLogger, type DependencyState } from '../lib/dependency-state.js';
import { withTimeout } from '../lib/with-timeout.js';

export interface RedisClient {
  /** Commands. Fails fast while Redis is unreachable instead of queueing without bound. */
  readonly redis: Redis;
  /** Prefix of every key and channel this service uses (isolates deployments and tests). */
  readonly keyPrefix: string;
  readonly state: DependencyState;
  /** A separate connection in subscriber mode (created on first use). */
  subscriber(): Redis;
  ping(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export function createRedis(options: { url: string; keyPrefix: string }, logger: DependencyLogger): RedisClient {
  const state = createDependencyState('redis', logger);
  const connectionOptions = {
    // A command waits for at most one reconnect attempt; the hot paths treat the
    // resulting error as "Redis unavailable" and degrade rather than hang.
    maxRetriesPerRequest: 1,
    commandTimeout: 1000,
    connectTimeout: 2000,
    enableAutoPipelining: true,
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** attempt, 2000),
    lazyConnect: false,
  };
  const redis = new Redis(options.url, connectionOptions);
  redis.on('error', (error) => state.down(error));
  redis.on('ready', () => state.up());

  let subscriber: Redis | undefined;
  return {
    redis,
    keyPrefix: options.keyPrefix,
    state,
    subscriber() {
      if (!subscriber) {
        subscriber = new Redis(options.url, { ...connectionOptions, maxRetriesPerRequest: null, commandTimeout: undefined });
        subscriber.on('error', (error) => state.down(error, { connection: 'subscriber' }));
      }
      return subscriber;
    },
    async ping(timeoutMs) {
      try {
        await withTimeout(redis.ping(), timeoutMs, 'redis ping');
        state.up();
      } catch (error) {
        state.down(error);
        throw error;
      }
    },
    async close() {
      // QUIT waits for a reply; on a connection that is down (the subscriber
      // retries without limit) it would wait forever and hang the shutdown.
      await Promise.all(
        [redis, subscriber].map((connection) =>
          connection?.status === 'ready' ? connection.quit().catch(() => connection.disconnect()) : connection?.disconnect(),
        ),
      );
    },
  };
}
