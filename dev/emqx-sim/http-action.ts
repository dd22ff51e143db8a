import { setTimeout as sleep } from 'node:timers/promises';
import type { RenderedRequest } from './templates.js';
import type { HttpAnswer } from './auth-answers.js';
import type { BrokerLog } from './log.js';

export interface EventSenderOptions {
  /** How long an event may wait for a successful delivery, from when it was queued (`request_ttl`). */
  readonly requestTtlMs: number;
  /** Immediate retries after a failed attempt (`parameters.max_retries`). */
  readonly maxRetries: number;
  /** Pause of the buffer before it tries again once the immediate retries are spent. */
  readonly resumeIntervalMs: number;
  readonly send: (request: RenderedRequest, timeoutMs: number, signal: AbortSignal) => Promise<HttpAnswer>;
  readonly log: BrokerLog;
}

export type Delivery = 'delivered' | 'dropped' | 'expired' | 'closed';

export interface EventSender {
  /** Queues one rule output's request; settles when it was delivered or given up. */
  send(request: RenderedRequest, label: string): Promise<Delivery>;
  /** Stops retrying, after waiting up to `graceMs` for events under way. */
  close(graceMs: number): Promise<void>;
}

/**
 * EMQX's HTTP action (docs/emqx-contract.md §C): one request per event, no order
 * between events. Any 2xx is success. 429, 503, a connection error or a
 * timeout is retried — `maxRetries` times at once, then every
 * `resumeIntervalMs` until `requestTtlMs` after the event was queued. Every
 * other status drops the event.
 */
export function createEventSender(options: EventSenderOptions): EventSender {
  const { log } = options;
  const pending = new Set<Promise<Delivery>>();
  const stop = new AbortController();

  async function deliver(request: RenderedRequest, label: string): Promise<Delivery> {
    const deadline = Date.now() + options.requestTtlMs;
    for (let attempt = 1; ; attempt += 1) {
      if (stop.signal.aborted) return 'closed';
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        log.warn(`event ${label}: not delivered within request_ttl, dropped`);
        return 'expired';
      }
      let why: string;
      try {
        const answer = await options.send(request, remaining, stop.signal);
        if (answer.status >= 200 && answer.status < 300) return 'delivered';
        if (answer.status !== 429 && answer.status !== 503) {
          log.warn(`event ${label}: the service answered ${answer.status}, dropped (EMQX retries only 429 and 503) ${answer.body.slice(0, 200)}`);
          return 'dropped';
        }
        why = `answered ${answer.status}`;
      } catch (error) {
        if (stop.signal.aborted) return 'closed';
        why = error instanceof Error ? error.message : String(error);
      }
      const pause = attempt <= options.maxRetries ? 0 : options.resumeIntervalMs;
      log.warn(`event ${label}: ${why}; retrying${pause ? ` in ${pause / 1000} s` : ''}`);
      if (pause) await sleep(Math.min(pause, Math.max(0, deadline - Date.now())), undefined, { signal: stop.signal }).catch(() => undefined);
    }
  }

  return {
    send(request, label) {
      const delivery = deliver(request, label);
      pending.add(delivery);
      void delivery.finally(() => pending.delete(delivery));
      return delivery;
    },
    async close(graceMs) {
      await Promise.race([Promise.allSettled([...pending]), sleep(graceMs)]);
      stop.abort();
      await Promise.allSettled([...pending]);
    },
  };
}
