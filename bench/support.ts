import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { createKafka } from '../src/infra/kafka.js';
import { createTopicNames } from '../src/lib/topics.js';

export interface Server {
  readonly port: number;
  readonly process: ChildProcess;
  rssMb(): number;
  /** CPU time (user + system) the server process has used so far, in seconds. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/**
 * The environment the Dockerfile gives the service (the `ENV` lines of its
 * last stage: malloc arenas, V8 flags in NODE_OPTIONS), so the bench measures
 * RSS and CPU as deployed and cannot drift from the image.
 */
export function deployedEnv(dockerfile = 'Dockerfile'): Record<string, string> {
  const lines = readFileSync(dockerfile, 'utf8').split('\n');
  const lastStage = lines.findLastIndex((line) => /^FROM\s/i.test(line));
  const env: Record<string, string> = {};
  for (const line of lines.slice(lastStage)) {
    // One variable per line; its value bare or in double quotes.
    const match = /^ENV\s+([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|(\S+))\s*$/.exec(line);
    if (match) env[match[1] as string] = (match[2] ?? match[3]) as string;
  }
  return env;
}

/**
 * The node flags of the Dockerfile's CMD (what comes between `node` and the
 * script), which NODE_OPTIONS cannot carry: V8's own flags.
 */
export function deployedNodeFlags(dockerfile = 'Dockerfile'): string[] {
  const cmd = readFileSync(dockerfile, 'utf8')
    .split('\n')
    .findLast((line) => /^CMD\s+\[/.test(line));
  if (cmd === undefined) return [];
  const args = JSON.parse(cmd.replace(/^CMD\s+/, '')) as string[];
  return args[0] === 'node' ? args.slice(1, -1) : [];
}

/** USER_HZ: the unit of the CPU times in /proc (100 on Linux on every common architecture). */
const CLOCK_TICKS_PER_S = 100;

/** A process's parent, its own CPU seconds (utime + stime) and its reaped children's (cutime + cstime); null once it is gone. */
function procStat(pid: string): { parent: string; own: number; children: number } | null {
  try {
    // After the parenthesized name: state is field 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const seconds = (a: number, b: number) => (Number(fields[a]) + Number(fields[b])) / CLOCK_TICKS_PER_S;
    return { parent: fields[1] ?? '', own: seconds(11, 12), children: seconds(13, 14) };
  } catch {
    return null;
  }
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/**
 * The CPU seconds this machine's Postgres and Kafka have used so far, read
 * from /proc (null where there is none): every Postgres process, with the
 * backends that have exited counted in their postmaster's reaped children,
 * and the JVM running `kafka.Kafka`. They share the machine's cores with the
 * service and the bench; their CPU per command tells what bounds the command
 * scenario's throughput.
 */
export function dependencyCpuSeconds(): { postgres: number; kafka: number } | null {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return null;
  }
  const postgres = new Map<string, NonNullable<ReturnType<typeof procStat>>>();
  let kafka = 0;
  for (const pid of pids) {
    const isPostgres = readOr(`/proc/${pid}/comm`, '').trim() === 'postgres';
    const isKafka = !isPostgres && readOr(`/proc/${pid}/cmdline`, '').includes('kafka.Kafka');
    if (!isPostgres && !isKafka) continue;
    const stat = procStat(pid);
    if (stat === null) continue;
    if (isKafka) kafka += stat.own;
    else postgres.set(pid, stat);
  }
  let postgresSeconds = 0;
  for (const stat of postgres.values()) {
    // A postmaster (its parent is no Postgres process) holds its exited backends' CPU.
    postgresSeconds += stat.own + (postgres.has(stat.parent) ? 0 : stat.children);
  }
  return { postgres: postgresSeconds, kafka };
}

/** Starts a bench server script (JavaScript, on plain node) in its own process and waits for its port. */
export function startServer(script: string, env: Record<string, string> = {}, node = process.execPath): Promise<Server> {
  // BENCH_PROF=<directory>: a V8 CPU profile of each server, written there when it exits.
  // BENCH_PERF_MAP=1: each server writes /tmp/perf-<pid>.map, so that Linux `perf` names its JavaScript frames.
  const profile = [
    ...(process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : []),
    ...(process.env.BENCH_PERF_MAP === '1' ? ['--perf-basic-prof'] : []),
  ];
  // The service with the node flags its image runs it with (its checkout's Dockerfile); the bare handler without.
  const flags = script.endsWith('app-server.mjs') ? deployedNodeFlags(path.join(path.dirname(script), '..', 'Dockerfile')) : [];
  const child = spawn(node, [...flags, ...profile, script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const line = buffered.split('\n').find((candidate) => candidate.startsWith('{"port"'));
      if (!line) return;
      const { port } = JSON.parse(line) as { port: number };
      resolve({
        port,
        process: child,
        rssMb() {
          const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
          const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
          return Math.round(kb / 1024);
        },
        cpuSeconds() {
          return procStat(String(child.pid))?.own ?? 0;
        },
        stop: () =>
          new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

export interface LoadSpec {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Bodies to rotate through (one per request), for routes where repeats matter. */
  bodies?: string[];
  /** A fresh body for every request, for routes where no two requests may be alike. */
  nextBody?: () => string;
  /** Paths to rotate through (one per request), for routes that name what they act on; `path` is the first request's. */
  paths?: string[];
  /** Called with each response's status, the body of the request it answers and the server's port. */
  onResponse?: (status: number, requestBody: string, port: number) => void;
  connections?: number;
  durationS?: number;
  /** Seconds the service is driven before the rounds are measured (default 2; 0 = none). */
  warmupS?: number;
  /**
   * Called before each service (this build's, or the other's under
   * BENCH_COMPARE) is driven, with its port: where work the requests cause
   * later (EMQX's events) should go, so that each build's CPU counts its own.
   */
  drivingService?: (port: number) => void;
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  total: number;
  /** 2xx responses; in measurePaired's result, those of every run of the service, warm-up included. */
  okIncludingWarmup: number;
}

export async function load(port: number, spec: LoadSpec): Promise<LoadResult> {
  const headers = { 'content-type': 'application/json', ...spec.headers };
  const bodies = spec.bodies;
  let next = 0;
  const nextBody = spec.nextBody ?? (bodies ? () => bodies[next++ % bodies.length] ?? '' : undefined);
  const paths = spec.paths;
  let nextPathIndex = 0;
  const nextPath = paths ? () => paths[nextPathIndex++ % paths.length] ?? spec.path : undefined;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${spec.path}`,
    method: spec.method,
    headers,
    connections: spec.connections ?? 64,
    duration: spec.durationS ?? Number(process.env.BENCH_DURATION_S ?? 4),
    // A fixed offered load (BENCH_RATE, req/s) instead of as fast as possible:
    // the CPU time per request then compares two builds without the swings
    // a shared machine gives the throughput.
    ...(process.env.BENCH_RATE ? { overallRate: Number(process.env.BENCH_RATE) } : {}),
    ...(spec.body !== undefined ? { body: spec.body } : {}),
    ...(nextBody || nextPath
      ? {
          requests: [
            {
              // One request at a time per connection, so the context holds the body being answered.
              setupRequest: (request: autocannon.Request, context: object) => {
                const body = nextBody ? nextBody() : (spec.body ?? '');
                (context as { body?: string }).body = body;
                return { ...request, body, ...(nextPath ? { path: nextPath() } : {}) };
              },
              ...(spec.onResponse
                ? { onResponse: (status: number, _body: string, context: object) => spec.onResponse?.(status, (context as { body?: string }).body ?? '', port) }
                : {}),
            },
          ],
        }
      : {}),
  });
  return {
    rps: Math.round(result.requests.average),
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    total: result.requests.total,
    okIncludingWarmup: result['2xx'],
  };
}

/** The yardstick's work, run by a fresh node process: JSON in and out and property access, like the service's own. */
const YARDSTICK = `
const body = JSON.stringify({ clientid: 'd-0123456789', username: 'd-0123456789', topic: 'devices/d-0123456789/telemetry', qos: 1,
  payload: { temperature: 21.5, humidity: 40, state: 'running' } });
const start = process.cpuUsage();
let sum = 0;
for (let i = 0; i < 200000; i++) {
  const parsed = JSON.parse(body);
  parsed.payload.humidity = i;
  sum += JSON.stringify(parsed).length;
}
const used = process.cpuUsage(start);
process.stdout.write(String(sum > 0 ? Math.round((used.user + used.system) / 1000) : -1));
`;

/**
 * A yardstick for the machine: the CPU milliseconds a fresh node process
 * spends on 200,000 JSON round trips. The targets in µs and per second
 * assume a dedicated core; on a shared virtual machine a core delivers less,
 * and this figure says by how much, so that absolute figures from different
 * runs can be set side by side. A process of its own, so that this one's
 * heap (the EMQX simulation's sessions) does not weigh on it.
 */
export function yardstickMs(): number {
  return Number(execFileSync(process.execPath, ['-e', YARDSTICK], { encoding: 'utf8' }));
}

/** The middle value (the upper one of an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

export interface PairedResult {
  /** Median req/s of the bare handler over the rounds. */
  ceilingRps: number;
  /** The service's rounds folded together: median rps, p50 and p99; summed counts. */
  result: LoadResult;
  /** Median p99 of the bare handler, measured under the same load. */
  ceilingP99: number;
  /** Median of the per-round ratios (each round measures both back to back). */
  ratio: number;
  ratios: number[];
  /** Median CPU time per answered request, in microseconds, of each server process, and of this process while it drove the service. */
  cpuPerRequestUs: { bare: number; service: number; bench: number };
  /** Median share of one core the service process was busy while measured. */
  serviceBusy: number;
  /** The other build, when one was compared (BENCH_COMPARE), measured in the same rounds. */
  other?: {
    result: LoadResult;
    ratio: number;
    ratios: number[];
    cpuPerRequestUs: number;
    /** Median over the rounds of (this build's req/s ÷ the other's in the same round) − 1. */
    gain: number;
    /** Median over the rounds of (the other's CPU time per request ÷ this build's in the same round) − 1. */
    cpuSaving: number;
  };
}

interface Measured {
  result: LoadResult;
  cpuS: number;
  /** This process's CPU meanwhile: the load generator, and the EMQX simulation where a scenario uses it. */
  benchCpuS: number;
  wallS: number;
}

/** One load run against a server, with the CPU time its process, and this one, used meanwhile. */
async function measure(server: Server, spec: LoadSpec): Promise<Measured> {
  const cpuBefore = server.cpuSeconds();
  const benchBefore = process.cpuUsage();
  const startedAt = performance.now();
  const result = await load(server.port, spec);
  const bench = process.cpuUsage(benchBefore);
  return { result, cpuS: server.cpuSeconds() - cpuBefore, benchCpuS: (bench.user + bench.system) / 1e6, wallS: (performance.now() - startedAt) / 1000 };
}

const perRequestUs = (seconds: number, m: Measured) => (seconds / Math.max(1, m.result.total)) * 1e6;
const cpuPerRequestUs = (m: Measured) => perRequestUs(m.cpuS, m);
const benchCpuPerRequestUs = (m: Measured) => perRequestUs(m.benchCpuS, m);

function fold(runs: Measured[], warmedUp: number): LoadResult {
  const results = runs.map((run) => run.result);
  return {
    rps: median(results.map((r) => r.rps)),
    p50: median(results.map((r) => r.p50)),
    p99: median(results.map((r) => r.p99)),
    non2xx: results.reduce((sum, r) => sum + r.non2xx, 0),
    errors: results.reduce((sum, r) => sum + r.errors, 0),
    total: results.reduce((sum, r) => sum + r.total, 0),
    okIncludingWarmup: results.reduce((sum, r) => sum + r.okIncludingWarmup, warmedUp),
  };
}

async function warmUp(server: Server, spec: LoadSpec): Promise<number> {
  const warmupS = spec.warmupS ?? 2;
  return warmupS > 0 ? (await load(server.port, { ...spec, durationS: warmupS })).okIncludingWarmup : 0;
}

/**
 * On a shared machine the ceiling itself swings between runs, so the bare
 * handler and the service are measured back to back in several rounds and the
 * median of the per-round ratios is reported. The CPU time each process used
 * tells whether the service was bound by its own work (busy near 100 %) or
 * by waiting. With `other` (another build of the service), every round also
 * measures it, the two builds taking turns at going first.
 */
export async function measurePaired(
  bare: Server,
  app: Server,
  spec: LoadSpec,
  rounds: number,
  other?: Server,
  /** Measured after the service in every round (another way of doing the same work). */
  eachRound?: () => Promise<unknown>,
): Promise<PairedResult> {
  const driving = (service: Server) => {
    spec.drivingService?.(service.port);
    return service;
  };
  await load(bare.port, { ...spec, durationS: 2 });
  const warmedUp = await warmUp(driving(app), spec);
  const otherWarmedUp = other ? await warmUp(driving(other), spec) : 0;
  const ceilings: Measured[] = [];
  const runs: Measured[] = [];
  const otherRuns: Measured[] = [];
  for (let round = 0; round < rounds; round++) {
    ceilings.push(await measure(bare, spec));
    if (other && round % 2 === 1) otherRuns.push(await measure(driving(other), spec));
    runs.push(await measure(driving(app), spec));
    if (other && round % 2 === 0) otherRuns.push(await measure(driving(other), spec));
    await eachRound?.();
  }
  const ratioTo = (list: Measured[]) => list.map((run, index) => run.result.rps / (ceilings[index]?.result.rps || 1));
  const ratios = ratioTo(runs);
  return {
    ceilingRps: median(ceilings.map((c) => c.result.rps)),
    ceilingP99: median(ceilings.map((c) => c.result.p99)),
    ratio: median(ratios),
    ratios,
    cpuPerRequestUs: { bare: median(ceilings.map(cpuPerRequestUs)), service: median(runs.map(cpuPerRequestUs)), bench: median(runs.map(benchCpuPerRequestUs)) },
    serviceBusy: median(runs.map((run) => run.cpuS / run.wallS)),
    result: fold(runs, warmedUp),
    ...(other
      ? {
          other: {
            result: fold(otherRuns, otherWarmedUp),
            ratio: median(ratioTo(otherRuns)),
            ratios: ratioTo(otherRuns),
            cpuPerRequestUs: median(otherRuns.map(cpuPerRequestUs)),
            gain: median(runs.map((run, index) => run.result.rps / (otherRuns[index]?.result.rps || 1) - 1)),
            cpuSaving: median(runs.map((run, index) => cpuPerRequestUs(otherRuns[index] ?? run) / cpuPerRequestUs(run) - 1)),
          },
        }
      : {}),
  };
}

export function printRow(cells: (string | number)[]) {
  // At least one space between cells, however long a cell is.
  console.log(cells.map((cell, index) => String(cell).padEnd(index === 0 ? 34 : 12)).join(' '));
}

const quietKafka = { debug: () => undefined, info: () => undefined, warn: () => undefined };

/** Runs `use` on a pool of one connection to the database, and closes it. */
export async function withPool<T>(databaseUrl: string, use: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    return await use(pool);
  } finally {
    await pool.end();
  }
}

/**
 * A scenario's tenant with `count` devices, written straight into Postgres,
 * and its Kafka topics, made as the service would make them. Returns the
 * device ids.
 */
export async function seedBenchTenant(options: { databaseUrl: string; env: Record<string, string> }, tenant: string, count: number): Promise<string[]> {
  const devices = Array.from({ length: count }, () => randomUUID());
  await withPool(options.databaseUrl, async (pool) => {
    await pool.query('INSERT INTO tenants (id, name) VALUES ($1, $1)', [tenant]);
    await pool.query("INSERT INTO devices (id, tenant_id, name) SELECT id, $1, 'bench' FROM unnest($2::uuid[]) AS id", [tenant, devices]);
  });
  const kafka = createKafka({ brokers: (options.env.KAFKA_BROKERS ?? '').split(','), clientId: 'dlm-bench' }, quietKafka);
  try {
    await kafka.ensureTopics(createTopicNames(options.env.KAFKA_TOPIC_PREFIX ?? '').forTenant(tenant), {
      partitions: Number(options.env.KAFKA_TOPIC_PARTITIONS ?? 6),
      replicationFactor: Number(options.env.KAFKA_TOPIC_REPLICATION_FACTOR ?? 1),
    });
  } finally {
    await kafka.close();
  }
  return devices;
}
