import { Counter, Gauge, type Registry } from 'prom-client';
import type { EffectName, PendingEffects } from './change-repository.js';

const EFFECTS: readonly EffectName[] = ['kick', 'clean_up'];

/**
 * The change log and its effects. The pending gauges are read from Postgres
 * when scraped (the queue is shared by every replica, so every replica reports
 * the same figures); a failed read leaves them as last seen.
 */
export function createChangeMetrics(registry: Registry, pending: () => Promise<PendingEffects[]>) {
  let lastRead: Promise<PendingEffects[]> | null = null;
  // Both gauges are scraped together: one query serves the two.
  const read = () => {
    lastRead ??= pending().finally(() => setTimeout(() => (lastRead = null), 100).unref());
    return lastRead;
  };
  const collectInto = (gauge: Gauge<'effect'>, pick: (row: PendingEffects) => number) => async () => {
    const rows = await read().catch(() => null);
    if (!rows) return;
    for (const effect of EFFECTS) gauge.set({ effect }, pick(rows.find((row) => row.effect === effect) ?? { effect, count: 0, oldestS: 0 }));
  };

  const pendingGauge: Gauge<'effect'> = new Gauge({
    name: 'devicelink_change_effects_pending',
    help: 'Effects of credential changes not done yet, by effect (kick: a session to end through EMQX; clean_up: Redis state to remove)',
    labelNames: ['effect'] as const,
    registers: [registry],
    collect: () => collectInto(pendingGauge, (row) => row.count)(),
  });
  const oldestGauge: Gauge<'effect'> = new Gauge({
    name: 'devicelink_change_effects_oldest_pending_seconds',
    help: 'Age of the oldest effect not done yet, by effect (0 when none is pending)',
    labelNames: ['effect'] as const,
    registers: [registry],
    collect: () => collectInto(oldestGauge, (row) => row.oldestS)(),
  });

  return {
    applied: new Counter({
      name: 'devicelink_credential_changes_applied_total',
      help: 'Changes from the change log this replica has applied to what it holds in memory, by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    attempts: new Counter({
      name: 'devicelink_change_effect_attempts_total',
      help: 'Attempts at the effects of credential changes, by effect and outcome (done, failed: tried again later)',
      labelNames: ['effect', 'outcome'] as const,
      registers: [registry],
    }),
  };
}

export type ChangeMetrics = ReturnType<typeof createChangeMetrics>;
