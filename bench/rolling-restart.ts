// npm run bench:rolling: a rolling restart under load. Two replicas of the
// built service (dist/main.js, as the image runs it) behind a local TCP
// proxy that, like a Kubernetes Service, spreads new connections over the
// replicas whose /readyz answers 200 (checked every 500 ms, as endpoints
// follow readiness). A client shaped like EMQX's pool (8 keep-alive
// connections) sends authentication for valid and invalid keys and
// telemetry events, retrying a 503 or a failed call of an event as EMQX's
// HTTP action does. Each replica in turn gets SIGTERM, drains and starts
// again. Counted: authentication answers other than allow for a valid key or
// deny for an invalid one (must be 0), and events answered 2xx, or never,
// that are not in Kafka (must be 0). Exits 1 when either is not 0.
//
// ROLLING_DURATION_S (40), ROLLING_DEVICES (200), ROLLING_CONCURRENCY (16).
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createKafka } from '../src/infra/kafka.js';
import { createTopicNames } from '../src/lib/topics.js';
import { createTestDatabase } from '../test/helpers/database.js';
import { consumeRecords } from '../test/helpers/kafka.js';
import { TEST_HOOK_TOKEN, testEnv, uniqueTag } from '../test/helpers/env.js';
import { freePort } from '../test/helpers/ports.js';
import { publishEvent } from '../test/helpers/telemetry.js';
import { authnBody, seedDevices } from './auth-bench.js';
import { deployedEnv, deployedNodeFlags } from './support.js';

const DURATION_S = Number(process.env.ROLLING_DURATION_S ?? 40);
const DEVICES = Number(process.env.ROLLING_DEVICES ?? 200);
const CONCURRENCY = Number(process.env.ROLLING_CONCURRENCY ?? 16);
/** The replica's settings that make the restart graceful and spread connections again afterwards (as in deploy/kubernetes/base/config.env, shorter). */
const REPLICA_SETTINGS = { SHUTDOWN_DRAIN_DELAY_MS: '2000', SHUTDOWN_TIMEOUT_MS: '10000', HTTP_CONNECTION_MAX_AGE_MS: '3000' };
const ENDPOINT_CHECK_MS = 500;
const log = (line: string) => console.log(`rolling: ${line}`);

interface Replica {
  readonly name: string;
  readonly port: number;
  child: ChildProcess | null;
  ready: boolean;
  connections: number;
}

const tag = uniqueTag();
const db = await createTestDatabase(`rolling_${tag}`);
// takeover: the load connects the same devices again and again, each time as a new session.
const env = testEnv(`rolling-${tag}`, db.url, { LOG_LEVEL: 'warn', DUPLICATE_CLIENT_POLICY: 'takeover', ...deployedEnv(), ...REPLICA_SETTINGS, ...pick(process.env, Object.keys(REPLICA_SETTINGS)) });
log(`seeding ${DEVICES} devices …`);
const { tenantId, devices } = await seedDevices(db.url, DEVICES);
const topics = createTopicNames(env.KAFKA_TOPIC_PREFIX);
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };
const kafka = createKafka({ brokers: env.KAFKA_BROKERS.split(','), clientId: 'dlm-rolling' }, quiet);
await kafka.ensureTopics(topics.forTenant(tenantId), { partitions: 2, replicationFactor: 1 });
await kafka.close();

function pick(from: NodeJS.ProcessEnv, names: string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((name) => (from[name] === undefined ? [] : [[name, from[name] as string]])));
}

function start(replica: Replica): Promise<void> {
  const child = spawn(process.execPath, [...deployedNodeFlags(), 'dist/main.js'], { env: { ...process.env, ...env, PORT: String(replica.port) }, stdio: ['ignore', 'ignore', 'inherit'] });
  replica.child = child;
  return (async () => {
    for (let attempt = 0; attempt < 100; attempt++) {
      if ((await status(replica.port, '/readyz')) === 200) return;
      await sleep(200);
    }
    throw new Error(`replica ${replica.name} did not become ready`);
  })();
}

/** Requests a replica has answered on the EMQX routes since it started (its /metrics). */
async function answered(port: number): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  let total = 0;
  for (const match of text.matchAll(/^devicelink_http_requests_total\{route="\/emqx\/[^"]*"[^}]*\} (\d+)$/gm)) total += Number(match[1]);
  return total;
}

function status(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false, timeout: 2000 }, (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      })
      .on('error', () => resolve(0))
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy();
      });
  });
}

// Two replicas and the proxy in front of them.
const replicas: Replica[] = [];
for (const name of ['a', 'b']) replicas.push({ name, port: await freePort(), child: null, ready: false, connections: 0 });
await Promise.all(replicas.map(start));
// Both answered /readyz 200: in the endpoints from the start.
for (const replica of replicas) replica.ready = true;
let watching = true;
const watcher = (async () => {
  while (watching) {
    await Promise.all(replicas.map(async (replica) => (replica.ready = (await status(replica.port, '/readyz')) === 200)));
    await sleep(ENDPOINT_CHECK_MS);
  }
})();
let next = 0;
let proxyRefused = 0;
const proxy = net.createServer((client) => {
  const ready = replicas.filter((replica) => replica.ready);
  const target = ready[next++ % Math.max(1, ready.length)];
  if (!target) {
    proxyRefused++;
    client.destroy();
    return;
  }
  target.connections++;
  const upstream = net.connect(target.port, '127.0.0.1');
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
});
await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const proxyPort = (proxy.address() as net.AddressInfo).port;

// The load: EMQX's pool of 8 keep-alive connections, no pipelining.
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
function post(path: string, body: string): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const request = http.request(
      { host: '127.0.0.1', port: proxyPort, path, method: 'POST', agent, timeout: 5000, headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}`, 'content-type': 'application/json' } },
      (response) => {
        let text = '';
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
        response.on('error', (error) => resolve({ error: error.message }));
      },
    );
    request.on('error', (error) => resolve({ error: (error as NodeJS.ErrnoException).code ?? error.message }));
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.end(body);
  });
}

const counts = { authn: 0, allowed: 0, denied: 0, wrongAnswers: 0, eventsSent: 0, eventsAnswered: 0, eventRetries: 0, eventsGivenUp: 0 };
const wrong = new Map<string, number>();
const answeredIds: string[] = [];
let running = true;
let sequence = 0;

async function worker() {
  while (running) {
    const index = sequence++;
    const device = devices[index % devices.length]!;
    if (index % 3 === 2) {
      // A telemetry event, retried as EMQX's HTTP action retries (503, connection errors, timeouts).
      const event = publishEvent(device.id, JSON.stringify({ sequence: index }));
      const body = JSON.stringify(event);
      counts.eventsSent++;
      let answered = false;
      for (let attempt = 0; attempt < 100 && !answered; attempt++) {
        if (attempt > 0) {
          counts.eventRetries++;
          await sleep(100);
        }
        const result = await post('/emqx/events', body);
        answered = 'status' in result && result.status >= 200 && result.status < 300;
      }
      if (answered) {
        counts.eventsAnswered++;
        answeredIds.push(event.id);
      } else counts.eventsGivenUp++;
      continue;
    }
    // Authentication: a valid key, or (every other time) a wrong one from other addresses.
    const valid = index % 3 === 0;
    const body = valid ? authnBody(device, device.key, 1) : authnBody(device, `${device.key.slice(0, -4)}xxxx`, 70_000 + (index % 50_000));
    counts.authn++;
    const result = await post('/emqx/authn', body);
    const answer = 'error' in result ? `error ${result.error}` : result.status === 200 ? (JSON.parse(result.body) as { result: string }).result : `http ${result.status}`;
    if (valid && answer === 'allow') counts.allowed++;
    else if (!valid && answer === 'deny') counts.denied++;
    else {
      counts.wrongAnswers++;
      const key = `${valid ? 'valid' : 'invalid'} key: ${answer}`;
      wrong.set(key, (wrong.get(key) ?? 0) + 1);
    }
  }
}

log(`load for ${DURATION_S} s through the proxy on ${proxyPort}; replicas on ${replicas.map((r) => r.port).join(', ')}; ${JSON.stringify(REPLICA_SETTINGS)}`);
const startedAt = performance.now();
const workers = Array.from({ length: CONCURRENCY }, worker);
const restarts: string[] = [];
for (const replica of replicas) {
  await sleep((DURATION_S * 1000) / (replicas.length + 1) - (performance.now() - startedAt) / (replicas.length + 1));
  const before = { authn: counts.authn, events: counts.eventsSent };
  const stoppingAt = performance.now();
  const child = replica.child!;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const code = await exited;
  const stoppedMs = performance.now() - stoppingAt;
  await start(replica);
  restarts.push(
    `replica ${replica.name}: SIGTERM → exit ${code} in ${Math.round(stoppedMs)} ms, ready again ${Math.round(performance.now() - stoppingAt)} ms after SIGTERM; ` +
      `${counts.authn - before.authn} authentications and ${counts.eventsSent - before.events} events meanwhile`,
  );
  log(restarts.at(-1)!);
}
// How the load spreads once both are back: the requests each replica answered in the rest of the run.
await sleep(3000);
const windowStart = await Promise.all(replicas.map((replica) => answered(replica.port)));
const windowStartedAt = performance.now();
await sleep(Math.max(0, DURATION_S * 1000 - (performance.now() - startedAt)));
const windowEnd = await Promise.all(replicas.map((replica) => answered(replica.port)));
const windowS = (performance.now() - windowStartedAt) / 1000;
running = false;
await Promise.all(workers);
const elapsedS = (performance.now() - startedAt) / 1000;

// Every event answered 2xx must be in Kafka (and once: the message-id window).
const records = await consumeRecords([topics.telemetryRaw(tenantId)], answeredIds.length, { brokers: env.KAFKA_BROKERS, timeoutMs: 60_000, settleMs: 3000 });
const copies = new Map<string, number>();
for (const record of records) {
  const id = (JSON.parse(record.value ?? '{}') as { message_id: string }).message_id;
  copies.set(id, (copies.get(id) ?? 0) + 1);
}
const lost = answeredIds.filter((id) => !copies.has(id)).length + counts.eventsGivenUp;
const duplicated = answeredIds.filter((id) => (copies.get(id) ?? 0) > 1).length;

watching = false;
await watcher;
agent.destroy();
proxy.close();
await Promise.all(replicas.map((replica) => new Promise<void>((resolve) => {
  if (!replica.child || replica.child.exitCode !== null) return resolve();
  replica.child.once('exit', () => resolve());
  replica.child.kill('SIGTERM');
})));
await db.drop();

console.log(`
rolling restart of ${replicas.length} replicas under load, ${elapsedS.toFixed(1)} s, ${CONCURRENCY} concurrent callers over 8 keep-alive connections
${restarts.map((line) => `  ${line}`).join('\n')}
  authentications: ${counts.authn} (${counts.allowed} allow for a valid key, ${counts.denied} deny for an invalid one)
  answers other than allow/deny for valid/invalid keys: ${counts.wrongAnswers}${wrong.size ? ` (${[...wrong].map(([k, v]) => `${k} × ${v}`).join(', ')})` : ''}
  telemetry events: ${counts.eventsSent} sent, ${counts.eventsAnswered} answered 2xx, ${counts.eventRetries} retries (503 or failed calls), ${counts.eventsGivenUp} given up
  lost telemetry (answered 2xx or never, and not in Kafka): ${lost}; in Kafka more than once: ${duplicated}
  connections the proxy gave each replica: ${replicas.map((r) => `${r.name} ${r.connections}`).join(', ')}; refused for want of a ready replica: ${proxyRefused}
  requests each replica answered in the last ${windowS.toFixed(0)} s, both up: ${replicas.map((r, i) => `${r.name} ${windowEnd[i]! - windowStart[i]!}`).join(', ')}
`);
process.exit(counts.wrongAnswers === 0 && lost === 0 ? 0 : 1);
