import { credentialChangeChannel } from '../lib/credential-change.js';
import type { DependencyLogger } from '../lib/dependency-state.js';
import type { RedisClient, RedisConnection } from './redis.js';

export interface ChangeSignal {
  /** Tells every replica (this one included) that the change log moved. Best effort: never throws. */
  announce(): void;
  /** Calls `listener` on every announcement, and when the subscription is back after a loss; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** Resolves once the subscription is active. */
  ready(): Promise<void>;
}

/**
 * The "read the change log now" signal over Redis pub/sub. It only makes
 * replicas converge faster: each also reads the log every second, so a lost
 * message, or Redis being down, delays a change by at most that. One
 * subscriber connection per process.
 */
export function createChangeSignal(redis: RedisClient, logger: DependencyLogger): ChangeSignal {
  const channel = credentialChangeChannel(redis.keyPrefix);
  const listeners = new Set<() => void>();
  let subscribed: Promise<void> | undefined;
  const notify = () => {
    for (const listener of listeners) listener();
  };

  const subscribeOnce = (): Promise<void> => {
    subscribed ??= (async () => {
      const subscriber: RedisConnection = redis.subscriber();
      subscriber.on('message', (receivedOn: string) => {
        if (receivedOn === channel) notify();
      });
      // ioredis subscribes again by itself once the connection is back;
      // announcements made meanwhile were lost, so listeners read the log then.
      let lost = false;
      subscriber.on('close', () => {
        lost = true;
      });
      subscriber.on('ready', () => {
        if (!lost) return;
        lost = false;
        notify();
      });
      await subscriber.subscribe(channel);
    })().catch((error: unknown) => {
      subscribed = undefined;
      throw error;
    });
    return subscribed;
  };

  return {
    announce() {
      redis.redis.publish(channel, 'changed').catch((error: unknown) => {
        logger.warn({ channel, err: error instanceof Error ? error.message : String(error) }, 'change announcement not published; replicas read the log within a second anyway');
      });
    },
    subscribe(listener) {
      listeners.add(listener);
      subscribeOnce().catch((error: unknown) => redis.state.down(error, { connection: 'subscriber' }));
      return () => listeners.delete(listener);
    },
    ready: () => subscribeOnce(),
  };
}
