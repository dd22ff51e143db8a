// The command scenario: POST /v1/devices/{id}/commands over 1,000 devices,
// each command published to the EMQX simulation, whose programmatic clients
// are subscribed and ack at once, and whose rules post the delivered and
// acked events back to the service's /emqx/events. Measured: the creates;
// verified afterwards: every command created reached acked.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createCommandRepository } from '../src/modules/commands/command-repository.js';
import type { EmqxSim } from '../dev/emqx-sim/emqx-sim.js';
import { httpTransport } from '../dev/emqx-sim/service.js';
import { seedQueuedCommands } from '../test/helpers/commands.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/env.js';
import { dependencyCpuSeconds, seedBenchTenant, withPool, type LoadSpec } from './support.js';

const TENANT = 'bench-commands';
const DEVICES = 1000;

export function createCommandScenario(options: { databaseUrl: string; env: Record<string, string>; emqx: EmqxSim }) {
  const { emqx } = options;
  let createdOk = 0;
  let barePort = 0;
  /** Postgres's and Kafka's CPU, and the commands stored, when the scenario began. */
  let before: { cpu: ReturnType<typeof dependencyCpuSeconds>; stored: number } = { cpu: null, stored: 0 };

  return {
    name: 'POST …/commands → acked',
    async spec(app: { port: number }, bare: { port: number }): Promise<LoadSpec> {
      barePort = bare.port;
      const devices = await seedBenchTenant(options, TENANT, DEVICES);
      // Every device online and subscribed at QoS 1 before the simulation reports to the service.
      for (const device of devices) await emqx.subscribe(device, `devices/${device}/commands`);
      // The events go to the service being driven (with BENCH_COMPARE, the
      // builds take turns over one database), so each build handles the events
      // of its own commands, but for the few still on their way at a switch.
      const transports = new Map<number, ReturnType<typeof httpTransport>>();
      const sendEventsTo = (port: number) => {
        let transport = transports.get(port);
        if (!transport) transports.set(port, (transport = httpTransport(`http://127.0.0.1:${port}`)));
        emqx.sendEventsTo(transport);
      };
      sendEventsTo(app.port);
      before = { cpu: dependencyCpuSeconds(), stored: (await withPool(options.databaseUrl, commandCounts)).total };
      return {
        method: 'POST',
        path: `/v1/devices/${devices[0]}/commands`,
        paths: devices.map((device) => `/v1/devices/${device}/commands`),
        headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
        body: JSON.stringify({ name: 'bench', params: { mode: 'eco', level: 3 } }),
        onResponse(status, _body, answeredBy) {
          if (answeredBy !== barePort && status === 202) createdOk++;
        },
        drivingService: sendEventsTo,
      };
    },
    /** Every command answered 202 ends acked: waits for the simulation's events to settle. */
    async verify(): Promise<string> {
      const started = performance.now();
      return withPool(options.databaseUrl, async (pool) => {
        let counts = { total: 0, acked: 0 };
        for (;;) {
          counts = await commandCounts(pool);
          if (counts.acked === counts.total || performance.now() - started > 120_000) break;
          await sleep(500);
        }
        await emqx.settle();
        const unfinished = counts.total - counts.acked;
        const verdict = unfinished === 0 && counts.total >= createdOk ? 'OK' : 'FAILED';
        const lines = [
          `create → acked: ${createdOk} commands answered 202, ${counts.total} stored, ${counts.acked} acked, ${unfinished} not acked ${((performance.now() - started) / 1000).toFixed(1)} s after the last run — ${verdict}`,
        ];
        const after = dependencyCpuSeconds();
        const stored = counts.total - before.stored;
        if (before.cpu && after && stored > 0) {
          const perCommand = (seconds: number) => `${Math.round((seconds / stored) * 1e6)} µs`;
          lines.push(
            `  CPU per command stored over the scenario, warm-up included: Postgres ${perCommand(after.postgres - before.cpu.postgres)} (all its processes), Kafka ${perCommand(after.kafka - before.cpu.kafka)} (status records); they share the machine's cores with the service and this process`,
          );
        }
        return lines.join('\n');
      });
    },
  };
}

/** The scenario's commands stored, and those acked. */
async function commandCounts(pool: pg.Pool): Promise<{ total: number; acked: number }> {
  const { rows } = await pool.query<{ total: string; acked: string }>(
    "SELECT count(*) AS total, count(*) FILTER (WHERE state = 'acked') AS acked FROM commands WHERE tenant_id = $1",
    [TENANT],
  );
  return { total: Number(rows[0]?.total ?? 0), acked: Number(rows[0]?.acked ?? 0) };
}

/** Devices and commands behind each head in the claim measurement (BENCH_CLAIM_DEVICES, BENCH_CLAIM_QUEUED). */
const CLAIM_DEVICES = Number(process.env.BENCH_CLAIM_DEVICES ?? 10_000);
const CLAIM_QUEUED = Number(process.env.BENCH_CLAIM_QUEUED ?? 10);
const CLAIM_FINISHED = 100_000;

/**
 * What one dispatcher claim costs while commands wait behind offline
 * devices: CLAIM_DEVICES devices with CLAIM_QUEUED queued commands each,
 * every head answered 202 and waiting for its device (the state the service
 * leaves them in), in a database of their own. Measured: the claim with
 * nothing due, and with 100 devices' heads due (each claim rolled back, so
 * every run finds the same); then a device's pending count beside
 * CLAIM_FINISHED finished commands of its own.
 */
export async function benchCommandClaim(databaseUrl: string): Promise<string[]> {
  const commands = createCommandRepository();
  return withPool(databaseUrl, async (pool) => {
    const lines: string[] = [];
    const seeded = performance.now();
    await seedQueuedCommands(pool, 'bench-claim', CLAIM_DEVICES, CLAIM_QUEUED);
    // Every head got a 202 and waits for its device's subscription.
    await pool.query(
      `UPDATE commands SET send_after = now() + interval '5 minutes', last_error = 'no_subscriber'
        WHERE state = 'queued' AND NOT EXISTS (SELECT 1 FROM commands o WHERE o.device_id = commands.device_id AND o.state = 'queued' AND o.seq < commands.seq)`,
    );
    await pool.query('VACUUM ANALYZE commands');
    lines.push(`command claim — ${CLAIM_DEVICES.toLocaleString('en')} offline devices × ${CLAIM_QUEUED} queued commands (seeded in ${Math.round(performance.now() - seeded)} ms)`);

    const timeClaims = async (runs: number) => {
      const times: number[] = [];
      let claimed = 0;
      for (let run = 0; run < runs; run++) {
        await pool.query('BEGIN');
        const started = performance.now();
        claimed = (await commands.claim(pool, { leaseMs: 30_000, limit: 32 })).length;
        times.push(performance.now() - started);
        await pool.query('ROLLBACK');
      }
      times.sort((a, b) => a - b);
      return { median: times[Math.floor(times.length / 2)] ?? 0, p99: times[Math.floor(times.length * 0.99)] ?? 0, claimed };
    };
    const idle = await timeClaims(200);
    lines.push(`  claim with nothing due: median ${idle.median.toFixed(2)} ms, p99 ${idle.p99.toFixed(2)} ms (target ≤ 5 ms)`);
    // 100 devices come online: their heads are due.
    await pool.query(
      `UPDATE commands SET send_after = now() - interval '1 second'
        WHERE id IN (SELECT id FROM commands WHERE state = 'queued' AND send_after IS NOT NULL ORDER BY seq LIMIT 100)`,
    );
    const due = await timeClaims(200);
    lines.push(`  claim of 32 with 100 heads due: median ${due.median.toFixed(2)} ms, p99 ${due.p99.toFixed(2)} ms, ${due.claimed} claimed`);

    const device = '00000000-0000-4000-8000-00000000c1a1';
    await pool.query(
      `INSERT INTO commands (id, tenant_id, device_id, name, state, source, request_digest, ttl_s, created_at, updated_at, expires_at, finished_at)
       SELECT gen_random_uuid(), 'bench-claim', $1, 'done', 'acked', 'api', 'x', 3600, now(), now(), now(), now() FROM generate_series(1, $2)`,
      [device, CLAIM_FINISHED],
    );
    await pool.query('VACUUM ANALYZE commands');
    const counts: number[] = [];
    for (let run = 0; run < 200; run++) {
      const started = performance.now();
      await commands.countUnfinished(pool, device);
      counts.push(performance.now() - started);
    }
    counts.sort((a, b) => a - b);
    lines.push(`  pending count of a device with ${CLAIM_FINISHED.toLocaleString('en')} finished commands: median ${(counts[100] ?? 0).toFixed(2)} ms`);
    return lines;
  });
}
