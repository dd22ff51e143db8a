import { setTimeout as sleep } from 'node:timers/promises';
import { durationMs } from './emqx-config.js';
import { actionOutcome, HTTP_ACTION_DEFAULTS, resumeIntervalMs } from './emqx-facts.js';
import type { HoconObject } from './hocon.js';
import type { SimLog } from './log.js';
import { callService, type ServiceTransport } from './service.js';
import type { RenderedRequest } from './templates.js';

/** How one HTTP action delivers, from its emqx.conf settings and EMQX's defaults. */
export interface HttpActionSettings {
  /** How long an event may wait for a successful delivery, from when it was queued (`request_ttl`). */
  readonly requestTtlMs: number;
  /** Attempts at once after a failed one (`parameters.max_retries`). */
  readonly maxRetries: number;
  /** The buffer's pause before it tries again once those are spent. */
  readonly resumeIntervalMs: number;
  /** The longest one attempt waits for its answer; EMQX waits up to `request_ttl`. */
  readonly attemptTimeoutMs: number;
}

/** Where a run shortens EMQX's pauses (tests and the soak cannot wait 15 s between attempts). */
export interface ActionTiming {
  readonly resumeIntervalMs?: number;
  readonly attemptTimeoutMs?: number;
}

export function httpActionSettings(action: HoconObject, timing: ActionTiming = {}): HttpActionSettings {
  const parameters = (action.parameters ?? {}) as HoconObject;
  const resource = (action.resource_opts ?? {}) as HoconObject;
  const requestTtlMs = resource.request_ttl === undefined ? HTTP_ACTION_DEFAULTS.requestTtlMs : durationMs(resource.request_ttl);
  const healthCheckMs = resource.health_check_interval === undefined ? HTTP_ACTION_DEFAULTS.healthCheckIntervalMs : durationMs(resource.health_check_interval);
  return {
    requestTtlMs,
    maxRetries: typeof parameters.max_retries === 'number' ? parameters.max_retries : HTTP_ACTION_DEFAULTS.maxRetries,
    resumeIntervalMs: timing.resumeIntervalMs ?? resumeIntervalMs(requestTtlMs, healthCheckMs),
    attemptTimeoutMs: timing.attemptTimeoutMs ?? requestTtlMs,
  };
}

/** How one event's delivery ended, with the last status the service answered (null: none). */
export interface EventResult {
  readonly outcome: 'delivered' | 'dropped' | 'expired' | 'closed' | 'unsent';
  readonly status: number | null;
  readonly attempts: number;
}

export interface HttpAction {
  /** Delivers one rule output's request; settles once it was delivered or given up. */
  deliver(request: RenderedRequest, label: string, stop: AbortSignal): Promise<EventResult>;
}

/**
 * EMQX's HTTP action: one request per event, each on its own (the order
 * between events is the outbox's business), each attempt judged by
 * `actionOutcome` of the facts. A missing target (`target()` null) sends
 * nothing: EMQX with the action's rule disabled.
 */
export function createHttpAction(options: { settings: HttpActionSettings; target: () => ServiceTransport | null; log: SimLog }): HttpAction {
  const { settings, log } = options;
  return {
    async deliver(request, label, stop) {
      const deadline = Date.now() + settings.requestTtlMs;
      let status: number | null = null;
      for (let attempt = 1; ; attempt += 1) {
        const target = options.target();
        if (!target) return { outcome: 'unsent', status, attempts: attempt - 1 };
        if (stop.aborted) return { outcome: 'closed', status, attempts: attempt - 1 };
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          log.warn(`event ${label}: not delivered within request_ttl, dropped`);
          return { outcome: 'expired', status, attempts: attempt - 1 };
        }
        let answered: number | 'no_answer';
        let why: string;
        try {
          const answer = await callService(target, request, Math.min(remaining, settings.attemptTimeoutMs), stop);
          answered = status = answer.status;
          why = `answered ${answer.status} ${answer.body.slice(0, 200)}`;
        } catch (error) {
          if (stop.aborted) return { outcome: 'closed', status, attempts: attempt };
          answered = 'no_answer';
          why = error instanceof Error ? error.message : String(error);
        }
        const next = actionOutcome(answered);
        if (next === 'done') return { outcome: 'delivered', status, attempts: attempt };
        if (next === 'drop') {
          log.warn(`event ${label}: ${why}; dropped, as EMQX drops it`);
          return { outcome: 'dropped', status, attempts: attempt };
        }
        const pause = attempt <= settings.maxRetries ? 0 : settings.resumeIntervalMs;
        log.warn(`event ${label}: ${why}; retrying${pause ? ` in ${pause / 1000} s` : ''}`);
        if (pause) await sleep(Math.min(pause, Math.max(0, deadline - Date.now())), undefined, { signal: stop }).catch(() => undefined);
      }
    },
  };
}
