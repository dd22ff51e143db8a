// Fleet operations: onboarding 10,000 devices, each with labels and an API
// key, in one POST /v1/tenants/{tenantId}/device-imports, over HTTP as an
// operator's tool sends it (each run into a tenant of its own); and a command
// job to 10,000 subscribed devices, timed to all acked.
import { setTimeout as sleep } from 'node:timers/promises';
import type { EmqxSim } from '../dev/emqx-sim/emqx-sim.js';
import { httpTransport } from '../dev/emqx-sim/service.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/env.js';
import { median } from './support.js';

const DEVICES = Number(process.env.BENCH_IMPORT_DEVICES ?? 10_000);
const RUNS = Number(process.env.BENCH_IMPORT_RUNS ?? 3);
const TARGET_MS = 10_000;

export async function benchImport(port: number, tag: string): Promise<string[]> {
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${(await response.text()).slice(0, 200)}`);
    return response.json() as Promise<Record<string, unknown>>;
  };
  const lines: string[] = [];
  const times: number[] = [];
  for (let run = 1; run <= RUNS; run++) {
    const tenant = `bench-import-${tag}-${run}`.toLowerCase();
    await call('POST', '/v1/tenants', { id: tenant, name: tenant });
    const devices = Array.from({ length: DEVICES }, (_, index) => ({
      name: `meter ${index}`,
      labels: { site: `site-${index % 50}`, model: index % 2 ? 'tx-40' : 'tx-50', batch: tag },
      key: true,
    }));
    const started = performance.now();
    const answer = (await call('POST', `/v1/tenants/${tenant}/device-imports`, { devices })) as { devices: { key?: string }[] };
    const ms = Math.round(performance.now() - started);
    if (answer.devices.filter((device) => device.key).length !== DEVICES) throw new Error('an imported device has no key');
    times.push(ms);
    const page = (await call('GET', `/v1/tenants/${tenant}/devices?label=site=site-7&label=model=tx-40&limit=500`)) as { items: unknown[] };
    lines.push(`  run ${run}: ${DEVICES.toLocaleString('en')} devices with keys imported in ${ms} ms; ${page.items.length} of them listed by two labels`);
  }
  lines.unshift(`device import — ${DEVICES.toLocaleString('en')} devices with labels and keys in one request: median ${median(times)} ms of ${RUNS} runs (target ≤ ${TARGET_MS.toLocaleString('en')} ms)`);
  return lines;
}

const JOB_DEVICES = Number(process.env.BENCH_JOB_DEVICES ?? 10_000);
const JOB_TARGET_S = 15;

/**
 * A command job to 10,000 devices, every one online and subscribed in the
 * EMQX simulation (which acks at once and posts the delivery events back):
 * the time from the create request to every command acked.
 */
export async function benchJob(port: number, emqx: EmqxSim, tag: string): Promise<string[]> {
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${(await response.text()).slice(0, 200)}`);
    return response.json() as Promise<Record<string, unknown>>;
  };
  const tenant = `bench-job-${tag}`.toLowerCase();
  await call('POST', '/v1/tenants', { id: tenant, name: tenant });
  const imported = (await call('POST', `/v1/tenants/${tenant}/device-imports`, {
    devices: Array.from({ length: JOB_DEVICES }, (_, index) => ({ name: `meter ${index}`, labels: { ring: 'all' } })),
  })) as { devices: { id: string }[] };
  emqx.sendEventsTo(httpTransport(`http://127.0.0.1:${port}`));
  const ids = imported.devices.map((device) => device.id);
  for (let start = 0; start < ids.length; start += 200) {
    await Promise.all(ids.slice(start, start + 200).map((id) => emqx.subscribe(id, `devices/${id}/commands`)));
  }

  const started = performance.now();
  const job = (await call('POST', `/v1/tenants/${tenant}/command-jobs`, { name: 'bench-job', target: { labels: { ring: 'all' } }, max_per_second: 10_000 })) as { id: string };
  const createdMs = Math.round(performance.now() - started);
  let current: { state: string; total: number; counts: Record<string, number> };
  /** The job's counts every 5 s: which stage (making, sending, acknowledging) holds the commands. */
  const timeline: string[] = [];
  for (;;) {
    current = (await call('GET', `/v1/tenants/${tenant}/command-jobs/${job.id}`)) as typeof current;
    const at = (performance.now() - started) / 1000;
    if (at >= (timeline.length + 1) * 5) {
      const counts = Object.entries(current.counts).filter(([, count]) => count > 0);
      timeline.push(`${Math.round(at)} s: ${counts.map(([state, count]) => `${state} ${count}`).join(', ')}`);
    }
    if (current.state !== 'running' || performance.now() - started > 120_000) break;
    await sleep(100);
  }
  const seconds = (performance.now() - started) / 1000;
  const acked = current.counts.acked ?? 0;
  const verdict = current.state === 'completed' && acked === current.total && seconds <= JOB_TARGET_S ? 'OK' : 'MISSED';
  const others = Object.entries(current.counts).filter(([state, count]) => state !== 'acked' && count > 0);
  return [
    `command job — ${JOB_DEVICES.toLocaleString('en')} subscribed devices by one label: ${current.state}, ${acked.toLocaleString('en')} of ${current.total.toLocaleString('en')} acked ${seconds.toFixed(1)} s after the create (answered in ${createdMs} ms; target ≤ ${JOB_TARGET_S} s) — ${verdict}`,
    ...(others.length > 0 ? [`  not acked: ${others.map(([state, count]) => `${state} ${count}`).join(', ')}`] : []),
    ...(timeline.length > 0 ? [`  under way: ${timeline.join('; ')}`] : []),
  ];
}
