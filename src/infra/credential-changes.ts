import type { Redis } from 'ioredis';
import { credentialChangeChannel, type CredentialChange } from '../lib/credential-change.js';
import type { DependencyLogger } from '../lib/dependency-state.js';
import type { RedisClient } from './redis.js';

export type CredentialChangeListener = (change: CredentialChange) => void;

export interface CredentialChangeBus {
  /** Publishes a committed change to every replica (this one included). Rejects when Redis fails. */
  publish(change: CredentialChange): Promise<void>;
  /**
   * Publishes a change that is already committed, retrying briefly while Redis
   * is unreachable. Never rejects: the change stands; a signal that could not
   * be sent is logged, and cache TTLs bound how long replicas miss it.
   */
  publishCommitted(change: CredentialChange): Promise<void>;
  /** Calls `listener` for every change; returns the unsubscribe function. */
  subscribe(listener: CredentialChangeListener): () => void;
  /** Resolves once the Redis subscription is active (changes published after that are seen). */
  ready(): Promise<void>;
  /**
   * Calls `listener` each time the subscription is active again after its
   * connection was lost: the changes published meanwhile were missed, so
   * whatever they would have dropped must be dropped now. Returns the
   * unsubscribe function.
   */
  onResubscribed(listener: () => void): () => void;
}

/**
 * The registry's change signal over Redis pub/sub (see lib/credential-change.ts
 * for the channel and message). One subscriber connection per process fans out
 * to every in-process cache.
 */
export function createCredentialChangeBus(redis: RedisClient, logger: DependencyLogger): CredentialChangeBus {
  const channel = credentialChangeChannel(redis.keyPrefix);
  const listeners = new Set<CredentialChangeListener>();
  const resubscribedListeners = new Set<() => void>();
  let subscribed: Promise<void> | undefined;

  const deliver = (message: string) => {
    let change: CredentialChange;
    try {
      change = JSON.parse(message) as CredentialChange;
    } catch {
      logger.warn({ channel }, 'ignoring a malformed credential change message');
      return;
    }
    for (const listener of listeners) listener(change);
  };

  const subscribeOnce = (): Promise<void> => {
    subscribed ??= (async () => {
      const subscriber: Redis = redis.subscriber();
      subscriber.on('message', (receivedOn: string, message: string) => {
        if (receivedOn === channel) deliver(message);
      });
      // ioredis re-subscribes by itself after a reconnect, but only once the
      // connection is ready again; the listeners run when the SUBSCRIBE
      // confirming the subscription has been answered, so nothing published
      // after they dropped their state goes unseen.
      let lost = false;
      subscriber.on('close', () => {
        lost = true;
      });
      subscriber.on('ready', () => {
        if (!lost) return;
        lost = false;
        subscriber.subscribe(channel).then(
          () => {
            for (const listener of resubscribedListeners) listener();
          },
          (error: unknown) => redis.state.down(error, { connection: 'subscriber' }),
        );
      });
      await subscriber.subscribe(channel);
    })().catch((error: unknown) => {
      subscribed = undefined;
      throw error;
    });
    return subscribed;
  };

  const publish = async (change: CredentialChange) => {
    await redis.redis.publish(channel, JSON.stringify(change));
  };

  return {
    publish,
    async publishCommitted(change) {
      for (let attempt = 0; ; attempt++) {
        try {
          await publish(change);
          return;
        } catch (error) {
          if (attempt >= 4) {
            logger.warn(
              { channel, kind: change.kind, device_id: change.device_id, err: (error as Error).message },
              'credential change committed but its signal could not be published',
            );
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      subscribeOnce().catch((error: unknown) => redis.state.down(error, { connection: 'subscriber' }));
      return () => listeners.delete(listener);
    },
    ready: () => subscribeOnce(),
    onResubscribed(listener) {
      resubscribedListeners.add(listener);
      return () => resubscribedListeners.delete(listener);
    },
  };
}
