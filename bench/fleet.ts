// Fleet onboarding: 10,000 devices, each with labels and an API key, created
// in one POST /v1/tenants/{tenantId}/device-imports, over HTTP as an
// operator's tool sends it. Each run imports into a tenant of its own.
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
