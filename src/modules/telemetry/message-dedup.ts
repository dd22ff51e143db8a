import type { Redis } from 'ioredis';
import { defineRedisScript } from '../../infra/redis-script.js';
import { createTurnBatcher } from '../../lib/turn-batcher.js';
import { withTimeout } from '../../lib/with-timeout.js';

export interface MessageDedup {
  /** The dedup key of a device's message. */
  keyOf(deviceId: string, messageId: string): string;
  /**
   * Which of the messages were already delivered within the window, in one
   * lookup; all false (and reported) when Redis did not answer in time.
   */
  delivered(keys: readonly string[]): Promise<boolean[]>;
  /** Records a delivered message; failures are reported, not thrown. */
  remember(key: string): Promise<void>;
}

export interface MessageDedupOptions {
  redis: Redis;
  keyPrefix: string;
  windowS: number;
  timeoutMs: number;
  onError(error: unknown): void;
}

/** SET key 1 EX window for every key: the marks of one acknowledged batch in one command. */
const REMEMBER = `
for _, key in ipairs(KEYS) do redis.call('SET', key, '1', 'EX', ARGV[1]) end
return #KEYS
`;

/**
 * The message-id dedup window. A message is remembered only after the broker
 * acknowledged it, so a retry of a message whose produce failed goes through.
 * The key holds the device id too: message ids are EMQX's, and scoping them
 * to the device keeps one device's ids from ever shadowing another's.
 *
 * The produce batcher looks up a whole batch with one MGET, and the marks of
 * one acknowledged batch share one script call: a Redis round trip costs more
 * CPU than the commands it carries. (The keys of one command span hash slots,
 * as on the single Redis node this service uses.)
 */
export function createMessageDedup(options: MessageDedupOptions): MessageDedup {
  const rememberScript = defineRedisScript(options.redis, 'dlmDedupRemember', REMEMBER, 'any');
  const mark = createTurnBatcher(async (keys: readonly string[]) => {
    await withTimeout(rememberScript(keys, [options.windowS]), options.timeoutMs, 'dedup record');
    return keys.map(() => undefined);
  });

  return {
    keyOf: (deviceId, messageId) => `${options.keyPrefix}ingest:seen:${deviceId}:${messageId}`,
    async delivered(keys) {
      if (keys.length === 0) return [];
      try {
        const values = await withTimeout(options.redis.mget(...keys), options.timeoutMs, 'dedup lookup');
        return values.map((value) => value !== null);
      } catch (error) {
        options.onError(error);
        return keys.map(() => false);
      }
    },
    async remember(key) {
      try {
        await mark(key);
      } catch (error) {
        options.onError(error);
      }
    },
  };
}
