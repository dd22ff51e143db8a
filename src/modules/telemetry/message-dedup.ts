import type { Redis } from 'ioredis';
import { defineRedisScript } from '../../infra/redis-script.js';
import { createTurnBatcher } from '../../lib/turn-batcher.js';
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
 * Lookups made in the same turn of the event loop share one MGET, and the
 * marks of one acknowledged Kafka batch one script call: a Redis round trip
 * costs more CPU than the commands it carries, and there were three per
 * message. (The keys of one command span hash slots, as on the single Redis
 * node this service uses.)
 */
export function createMessageDedup(options: MessageDedupOptions): MessageDedup {
  const key = (deviceId: string, messageId: string) => `${options.keyPrefix}ingest:seen:${deviceId}:${messageId}`;
  const rememberScript = defineRedisScript(options.redis, 'dlmDedupRemember', REMEMBER, 'any');

  const lookup = createTurnBatcher(async (keys: readonly string[]) => {
    const values = await withTimeout(options.redis.mget(...keys), options.timeoutMs, 'dedup lookup');
    return values.map((value) => value !== null);
  });
  const mark = createTurnBatcher(async (keys: readonly string[]) => {
    await withTimeout(rememberScript(keys, [options.windowS]), options.timeoutMs, 'dedup record');
    return keys.map(() => undefined);
  });

  return {
    async seen(deviceId, messageId) {
      try {
        return await lookup(key(deviceId, messageId));
      } catch (error) {
        options.onError(error);
        return 'unknown';
      }
    },
    async remember(deviceId, messageId) {
      try {
        await mark(key(deviceId, messageId));
      } catch (error) {
        options.onError(error);
      }
    },
  };
}
