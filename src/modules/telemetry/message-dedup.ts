import type { Redis } from 'ioredis';
import { withTimeout } from '../../lib/with-timeout.js';

export interface MessageDedup {
  /**
   * Whether the message was already delivered within the window; `unknown`
   * when Redis did not answer in time.
   */
  seen(deviceId: string, messageId: string): Promise<boolean | 'unknown'>;
  /** Records a delivered message; failures are reported, not thrown. */
  remember(deviceId: string, messageId: string): Promise<void>;
}

export interface MessageDedupOptions {
  redis: Pick<Redis, 'exists' | 'set'>;
  keyPrefix: string;
  windowS: number;
  timeoutMs: number;
  onError(error: unknown): void;
}

/**
 * The message-id dedup window. A message is remembered only after the broker
 * acknowledged it, so a retry of a message whose produce failed goes through.
 * The key holds the device id too: message ids are EMQX's, and scoping them
 * to the device keeps one device's ids from ever shadowing another's.
 */
export function createMessageDedup(options: MessageDedupOptions): MessageDedup {
  const key = (deviceId: string, messageId: string) => `${options.keyPrefix}ingest:seen:${deviceId}:${messageId}`;
  return {
    async seen(deviceId, messageId) {
      try {
        const found = await withTimeout(options.redis.exists(key(deviceId, messageId)), options.timeoutMs, 'dedup lookup');
        return found > 0;
      } catch (error) {
        options.onError(error);
        return 'unknown';
      }
    },
    async remember(deviceId, messageId) {
      try {
        await withTimeout(options.redis.set(key(deviceId, messageId), '1', 'EX', options.windowS), options.timeoutMs, 'dedup record');
      } catch (error) {
        options.onError(error);
      }
    },
  };
}
