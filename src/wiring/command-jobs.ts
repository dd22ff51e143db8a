import { createAuditRepository } from '../modules/audit/audit-repository.js';
import { createCommandJobRepository } from '../modules/commands/command-job-repository.js';
import { createCommandJobRunner } from '../modules/commands/command-job-runner.js';
import { createCommandJobService } from '../modules/commands/command-job-service.js';
import { createCommandRepository } from '../modules/commands/command-repository.js';
import { createTenantRepository } from '../modules/tenants/tenant-repository.js';
import type { Commands } from './commands.js';
import type { WiringContext } from './context.js';

/** How often each replica looks for a job batch that is due (a created job is started at once). */
const RUNNER_INTERVAL_MS = 100;

/** Command jobs: one command per targeted device, made at the job's rate by whichever replica takes its next batch. */
export function wireCommandJobs(deps: WiringContext & { commands: Pick<Commands, 'changed'> }) {
  const { config, infra, clock, log, lifecycle } = deps;
  const pool = infra.postgres.pool;
  const jobs = createCommandJobRepository();
  const commands = createCommandRepository();
  const runner = createCommandJobRunner({
    pool,
    jobs,
    commands,
    clock,
    maxPendingPerDevice: config.commands.maxPendingPerDevice,
    retentionDays: config.commands.retentionDays,
    intervalMs: RUNNER_INTERVAL_MS,
    changed: deps.commands.changed,
    log,
  });
  const service = createCommandJobService({
    pool,
    jobs,
    commands,
    tenants: createTenantRepository(),
    audit: createAuditRepository(),
    clock,
    repliesEnabled: config.commands.replies,
    changed: deps.commands.changed,
    nudge: runner.nudge,
  });
  lifecycle.onReady(() => runner.start());
  lifecycle.preClose(() => runner.stop());
  return { service };
}
