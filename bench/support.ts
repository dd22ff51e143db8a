import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

export interface Server {
  readonly port: number;
  readonly process: ChildProcess;
  rssMb(): number;
  stop(): Promise<void>;
}

/** Starts a bench server script in its own process and waits for its port. */
export function startServer(script: string, env: Record<string, string> = {}): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
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
  /** Called with each response's status, the body of the request it answers and the server's port. */
  onResponse?: (status: number, requestBody: string, port: number) => void;
  connections?: number;
  durationS?: number;
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  total: number;
  /** 2xx responses, the warm-up run's included (measure() only). */
  okIncludingWarmup: number;
}

export async function load(port: number, spec: LoadSpec): Promise<LoadResult> {
  const headers = { 'content-type': 'application/json', ...spec.headers };
  const bodies = spec.bodies;
  let next = 0;
  const nextBody = spec.nextBody ?? (bodies ? () => bodies[next++ % bodies.length] ?? '' : undefined);
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${spec.path}`,
    method: spec.method,
    headers,
    connections: spec.connections ?? 64,
    duration: spec.durationS ?? Number(process.env.BENCH_DURATION_S ?? 8),
    ...(spec.body !== undefined ? { body: spec.body } : {}),
    ...(nextBody
      ? {
          requests: [
            {
              // One request at a time per connection, so the context holds the body being answered.
              setupRequest: (request: autocannon.Request, context: object) => {
                const body = nextBody();
                (context as { body?: string }).body = body;
                return { ...request, body };
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

/** Runs a short warm-up, then the measured load. */
export async function measure(port: number, spec: LoadSpec): Promise<LoadResult> {
  const warmup = await load(port, { ...spec, durationS: 2 });
  const result = await load(port, spec);
  return { ...result, okIncludingWarmup: warmup.okIncludingWarmup + result.okIncludingWarmup };
}

export function printRow(cells: (string | number)[]) {
  console.log(cells.map((cell, index) => String(cell).padEnd(index === 0 ? 34 : 12)).join(''));
}
