import type { Redis } from 'ioredis';
import { defineRedisScript } from '../../infra/redis-script.js';
import { createDeferred, type Deferred } from '../../lib/deferred.js';
import { withTimeout } from '../../lib/with-timeout.js';

export interface MessageDedup {
  /** The dedup key of a device's message. */
  keyOf(deviceId: string, messageId: string): string;
  /**
   * Which of the messages were already delivered within the window, in one
   * script call that first writes the marks waiting to be sent; all false
   * (and reported) when Redis did not answer in time.
   */
  delivered(keys: readonly string[]): Promise<boolean[]>;
  /**
   * Records a delivered message: the mark goes out with the next lookup, or
   * on its own after `maxMarkDelayMs`. Settles once it was written; failures
   * are reported, not thrown.
   */
  remember(key: string): Promise<void>;
}

export interface MessageDedupOptions {
  redis: Redis;
  keyPrefix: string;
  windowS: number;
  timeoutMs: number;
  /** How long marks wait for a lookup to carry them before they are sent alone (default 5 ms). */
  maxMarkDelayMs?: number;
  onError(error: unknown): void;
}

/**
 * KEYS: the marks to write, then the keys to look up; ARGV: window (s), number
 * of marks. The marks are written first, so a lookup in the same call already
 * sees them. Returns 0/1 per looked-up key.
 */
const MARK_AND_LOOK_UP = `
local marks = tonumber(ARGV[2])
for i = 1, marks do redis.call('SET', KEYS[i], '1', 'EX', ARGV[1]) end
local found = {}
for i = marks + 1, #KEYS do found[#found + 1] = redis.call('EXISTS', KEYS[i]) end
return found
`;

/**
 * The message-id dedup window. A message is remembered only after the broker
 * acknowledged it, so a retry of a message whose produce failed goes through.
 * The key holds the device id too: message ids are EMQX's, and scoping them
 * to the device keeps one device's ids from ever shadowing another's.
 *
 * The produce batcher looks up a whole batch in one call, and that call also
 * writes the marks of the batches acknowledged since the previous one: under
 * load each batch costs one Redis round trip, which costs more CPU than the
 * commands it carries. Marks leave Redis's connection in order with the
 * lookups, so the lookup of a repeat that arrives after its answer (a later
 * request, so a later batch) sees its mark. (The keys of one call span hash
 * slots, as on the single Redis node this service uses.)
 */
export function createMessageDedup(options: MessageDedupOptions): MessageDedup {
  const script = defineRedisScript(options.redis, 'dlmDedupMarkAndLookUp', MARK_AND_LOOK_UP, 'any');
  const maxMarkDelayMs = options.maxMarkDelayMs ?? 5;
  let marks: string[] = [];
  let written: Deferred | undefined;
  let timer: NodeJS.Timeout | undefined;

  /** Sends the waiting marks along with `lookups`; resolves to the 0/1 answers, or null when Redis failed. */
  async function send(lookups: readonly string[]): Promise<readonly unknown[] | null> {
    clearTimeout(timer);
    timer = undefined;
    const carried = marks;
    const done = written;
    marks = [];
    written = undefined;
    try {
      const found = await withTimeout(
        script([...carried, ...lookups], [options.windowS, carried.length]),
        options.timeoutMs,
        lookups.length > 0 ? 'dedup lookup' : 'dedup record',
      );
      if (!Array.isArray(found) || found.length !== lookups.length) throw new Error('dedup lookup: unexpected reply');
      return found;
    } catch (error) {
      options.onError(error);
      return null;
    } finally {
      done?.resolve();
    }
  }

  return {
    keyOf: (deviceId, messageId) => `${options.keyPrefix}ingest:seen:${deviceId}:${messageId}`,
    async delivered(keys) {
      if (keys.length === 0) return [];
      const found = await send(keys);
      return found ? found.map((value) => value === 1) : keys.map(() => false);
    },
    remember(key) {
      marks.push(key);
      written ??= createDeferred();
      timer ??= setTimeout(() => void send([]), maxMarkDelayMs);
      return written.promise;
    },
  };
}
