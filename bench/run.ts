// npm run bench: each scenario is measured against a bare Fastify handler
// answering the same request in the same run; the ratio is what counts, since
// absolute numbers vary with the machine's load.
import { createTestDatabase } from '../test/helpers/database.js';
import { testEnv, uniqueTag } from '../test/helpers/env.js';
import { createIngestScenario } from './ingest.js';
import { measure, printRow, startServer, type LoadResult, type LoadSpec, type Server } from './support.js';

export interface Scenario {
  name: string;
  /** The target ratio to the ceiling, printed beside the result. */
  target?: number;
  spec: (app: Server) => Promise<LoadSpec> | LoadSpec;
  /** Checks after the run (e.g. that nothing was lost); returns a line to print. */
  verify?: (result: LoadResult) => Promise<string>;
}

const scenarios: Scenario[] = [
  { name: 'GET /healthz', spec: () => ({ method: 'GET', path: '/healthz' }) },
];

const tag = uniqueTag();
const db = await createTestDatabase(`bench_${tag}`);
const env = testEnv(`bench-${tag}`, db.url, { LOG_LEVEL: 'warn' });
scenarios.push(createIngestScenario({ databaseUrl: db.url, env }));
const bare = await startServer('bench/bare-server.ts');
const app = await startServer('bench/app-server.ts', env);

try {
  console.log(`device-link-mqtt bench — ${new Date().toISOString()}, ${Number(process.env.BENCH_DURATION_S ?? 8)} s per run\n`);
  printRow(['scenario', 'bare req/s', 'req/s', 'ratio', 'target', 'p50 ms', 'p99 ms', 'non-2xx', 'RSS MB']);
  for (const scenario of scenarios) {
    const spec = await scenario.spec(app);
    const ceiling = await measure(bare.port, spec);
    const result = await measure(app.port, spec);
    printRow([
      scenario.name,
      ceiling.rps,
      result.rps,
      `${Math.round((result.rps / ceiling.rps) * 100)} %`,
      scenario.target ? `≥ ${Math.round(scenario.target * 100)} %` : '-',
      result.p50,
      result.p99,
      result.non2xx + result.errors,
      app.rssMb(),
    ]);
    if (scenario.verify) console.log(`  ${await scenario.verify(result)}`);
  }
} finally {
  await Promise.all([bare.stop(), app.stop()]);
  await db.drop();
}
