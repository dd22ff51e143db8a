import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { UnusableBody } from '../../lib/unusable-body.js';

/** The authentication and authorization metrics, on the app's own registry. */
export function createAuthMetrics(registry: Registry) {
  return {
    // Counted on every CONNECT and every authorization check.
    authn: new Counter({
      name: 'devicelink_authn_total',
      help: 'Authentication answers, by result (allow, deny, ignore) and reason',
      labelNames: ['result', 'reason'] as const,
      registers: [registry],
    }),
    authz: new Counter({
      name: 'devicelink_authz_total',
      help: 'Authorization answers, by action and result; a body that could not be used is action "unknown", result deny, with its reason',
      labelNames: ['action', 'result', 'reason'] as const,
      registers: [registry],
    }),
    cache: new Counter({
      name: 'devicelink_credential_cache_lookups_total',
      help: 'Verified-credential cache lookups, by layer (memory, redis) and outcome (hit, miss)',
      labelNames: ['layer', 'outcome'] as const,
      registers: [registry],
    }),
    hashQueueDepth: new Gauge({
      name: 'devicelink_argon2_queue_depth',
      help: 'argon2 verifications waiting for a slot',
      registers: [registry],
    }),
    hashVerify: new Histogram({
      name: 'devicelink_argon2_verify_duration_seconds',
      help: 'Duration of one argon2 verification',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6],
      registers: [registry],
    }),
    hashRejected: new Counter({
      name: 'devicelink_argon2_queue_rejected_total',
      help: 'Verifications refused because they would have waited too long (answered ignore)',
      registers: [registry],
    }),
    keysRestored: new Counter({
      name: 'devicelink_api_keys_restored_total',
      help: 'Verified API keys stored again as a digest under the current secret, by what they were (argon2id, previous_secret) and result',
      labelNames: ['from', 'result'] as const,
      registers: [registry],
    }),
    throttled: new Counter({
      name: 'devicelink_authn_throttled_total',
      help: 'Attempts denied before any check because of earlier failures, by the limit that blocked them (device_peer, peer, device)',
      labelNames: ['scope'] as const,
      registers: [registry],
    }),
    kicks: new Counter({
      name: 'devicelink_emqx_kicks_total',
      help: 'Session endings through EMQX after a change, by reason (the change kind, or key_expired) and result (kicked, not_found, failed: tried again, not_connected and other_credential: left alone)',
      labelNames: ['reason', 'result'] as const,
      registers: [registry],
    }),
  };
}

export type AuthMetrics = ReturnType<typeof createAuthMetrics>;

/** Counts a deny the EMQX auth routes answered to a body they could not use: such a request never reaches the services that count every other answer. */
export interface UnusableBodyCounter {
  authn(reason: UnusableBody): void;
  authz(reason: UnusableBody): void;
}

export function countUnusableBodies(metrics: Pick<AuthMetrics, 'authn' | 'authz'>): UnusableBodyCounter {
  return {
    authn: (reason) => metrics.authn.inc({ result: 'deny', reason }),
    authz: (reason) => metrics.authz.inc({ action: 'unknown', result: 'deny', reason }),
  };
}
