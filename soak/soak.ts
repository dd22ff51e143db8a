// The fault soak: the service under authn, authz, telemetry and command load
// while Kafka, Redis and Postgres are restarted in turn, then everything
// produced is consumed back and every command followed to its end. The dependencies are private instances (a Kafka, a Redis
// and a Postgres of the soak's own), so the machine's services are never
// touched; the service runs from src/main.ts in a process of its own. EMQX is
// the one simulation (dev/emqx-sim): devices are its programmatic clients, and
// their telemetry and delivery events reach the service through its HTTP action.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createTopicNames } from '../src/lib/topics.js';
import { deployedEnv } from '../bench/support.js';
import { actionOutcome } from '../dev/emqx-sim/emqx-facts.js';
import { startEmqxSim } from '../dev/emqx-sim/emqx-sim.js';
import { httpTransport, type ServiceTransport } from '../dev/emqx-sim/service.js';
import { consumeRecords } from '../test/helpers/kafka.js';
import { freePort } from '../test/helpers/ports.js';
import { createPrivateKafka } from '../test/helpers/private-kafka.js';
import { createPrivatePostgres } from '../test/helpers/private-postgres.js';
import { createPrivateRedis } from '../test/helpers/private-redis.js';

export interface SoakOptions {
  /** How long load runs, faults included. */
  durationS: number;
  devices: number;
  /** How long each dependency stays down. */
  outageS: number;
  log(line: string): void;
}

export interface SoakReport {
  /** Answers by request kind and outcome. */
  outcomes: Record<string, Record<string, number>>;
  telemetry: { acknowledged: number; lost: number; duplicated: number; duplicatedWithoutRetry: number; dropped: number; unfinished: number };
  /**
   * Commands created over REST (202), each with its own Idempotency-Key and
   * retried on 503 or no answer as a careful client does: how many were
   * stored, how many reached `acked`, how many keys were stored twice, and how
   * many delivery events the service answered with a status EMQX drops.
   */
  commands: { created: number; stored: number; acked: number; notAcked: number; storedTwice: number; droppedEvents: number; deliveredTwice: number };
  /**
   * Keys revoked over REST during the run, each while its device was
   * connected: CONNECTs with a revoked key answered allow after the change
   * had been answered (must be 0), and sessions not ended by the end (must be 0).
   */
  revocations: { revoked: number; allowedAfter: number; sessionsNotEnded: number };
  wrongAllows: number;
  serverErrors: number;
  rssPeakMb: number;
  faults: string[];
  /** Why the soak failed; empty when it passed. */
  failures: string[];
}

const ADMIN_TOKEN = `soak-admin-${randomBytes(12).toString('hex')}`;
const HOOK_TOKEN = `soak-hook-${randomBytes(12).toString('hex')}`;
const TENANT = 'soak';
/** EMQX gives up on an event after request_ttl (10 min in deploy/emqx/emqx.conf); each attempt waits this long. */
const EVENT_ATTEMPT_TIMEOUT_MS = 15_000;
const EVENT_RETRY_MS = 1000;
const TELEMETRY_IN_FLIGHT = 32;
/** Pause between command creates: a few per second over the fleet. */
const COMMAND_INTERVAL_MS = 200;
/** How long the soak waits, after the load, for every created command to be acked. */
const COMMAND_SETTLE_MS = 120_000;
/** Devices whose keys are revoked during the run, one after another. */
const REVOKED_DEVICES = 12;
/** How long the soak waits, after the load, for the sessions of revoked keys to be ended. */
const KICK_SETTLE_MS = 60_000;

interface Answer {
  status: number;
  body: string;
}

function request(port: number, method: string, path: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) }, timeout: timeoutMs }, (res) => {
      let data = '';
      res.on('data', (chunk: Buffer) => (data += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

function count(table: Record<string, Record<string, number>>, kind: string, outcome: string) {
  const row = (table[kind] ??= {});
  row[outcome] = (row[outcome] ?? 0) + 1;
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;

interface Service {
  child: ChildProcess;
  /** The last 20,000 characters the service wrote. */
  output(): string;
  /** The service's log lines at level error (a 500 is logged there), the first 20 of them. */
  errorLines(): string[];
}

async function startService(env: Record<string, string>, port: number): Promise<Service> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let partial = '';
  const errorLines: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (errorLines.length < 20 && /"level":(50|60)/.test(line)) errorLines.push(line.slice(0, 2000));
  });
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
  for (let waited = 0; waited < 60_000; waited += 200) {
    if (child.exitCode !== null) throw new Error(`the service exited:\n${output}`);
    const answered = await request(port, 'GET', '/healthz', {}, undefined, 1000).then(() => true, () => false);
    if (answered) return { child, output: () => output, errorLines: () => errorLines };
    await sleep(200);
  }
  throw new Error(`the service did not start:\n${output}`);
}

function rssMb(child: ChildProcess): number {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0);
    return Math.round(kb / 1024);
  } catch {
    return 0;
  }
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const { log } = options;
  const report: SoakReport = {
    outcomes: {},
    telemetry: { acknowledged: 0, lost: 0, duplicated: 0, duplicatedWithoutRetry: 0, dropped: 0, unfinished: 0 },
    commands: { created: 0, stored: 0, acked: 0, notAcked: 0, storedTwice: 0, droppedEvents: 0, deliveredTwice: 0 },
    revocations: { revoked: 0, allowedAfter: 0, sessionsNotEnded: 0 },
    wrongAllows: 0,
    serverErrors: 0,
    rssPeakMb: 0,
    faults: [],
    failures: [],
  };
  log('starting a private Kafka, Redis and Postgres');
  const [kafka, redis, postgres, emqx] = await Promise.all([
    createPrivateKafka(),
    createPrivateRedis(),
    createPrivatePostgres(),
    // EMQX's HTTP action here waits EVENT_RETRY_MS between rounds of retries and EVENT_ATTEMPT_TIMEOUT_MS for an answer.
    startEmqxSim({ hookToken: HOOK_TOKEN, apiKey: 'soak', apiSecret: randomBytes(16).toString('hex'), timing: { resumeIntervalMs: EVENT_RETRY_MS, attemptTimeoutMs: EVENT_ATTEMPT_TIMEOUT_MS } }),
  ]);
  let service: Service | undefined;
  /** Set when the soak stops waiting: deliveries still retried end. */
  let givenUp = false;
  try {
    await Promise.all([kafka.start(), redis.start(), postgres.start()]);
    const port = await freePort();
    const prefix = `soak${randomBytes(3).toString('hex')}.`;
    service = await startService(
      {
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'error',
        DATABASE_URL: postgres.url,
        REDIS_URL: redis.url,
        KAFKA_BROKERS: kafka.brokers,
        KAFKA_TOPIC_PREFIX: prefix,
        KAFKA_TOPIC_PARTITIONS: '2',
        ADMIN_TOKEN,
        EMQX_HOOK_TOKEN: HOOK_TOKEN,
        EMQX_API_URL: emqx.url,
        EMQX_API_KEY: emqx.apiKey,
        EMQX_API_SECRET: emqx.apiSecret,
        CREDENTIAL_CACHE_SECRET: randomBytes(24).toString('hex'),
        KEY_DIGEST_SECRET: randomBytes(32).toString('hex'),
        // Devices reconnect many times a second here; the reject policy would (rightly) refuse most.
        DUPLICATE_CLIENT_POLICY: 'takeover',
        // The image's malloc and V8 settings, as the service is deployed.
        ...deployedEnv(),
      },
      port,
    );
    const running = service.child;
    const sampler = setInterval(() => (report.rssPeakMb = Math.max(report.rssPeakMb, rssMb(running))), 500);
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const hook = { authorization: `Bearer ${HOOK_TOKEN}` };
    const created = await request(port, 'POST', '/v1/tenants', admin, JSON.stringify({ id: TENANT, name: 'Soak' }), 30_000);
    if (created.status !== 201) throw new Error(`creating the tenant answered ${created.status}: ${created.body}`);
    const newDevice = async (name: string) => {
      const device = JSON.parse((await request(port, 'POST', `/v1/tenants/${TENANT}/devices`, admin, JSON.stringify({ name }), 10_000)).body) as { id: string };
      const issued = JSON.parse((await request(port, 'POST', `/v1/devices/${device.id}/keys`, admin, '{}', 10_000)).body) as { id: string; key: string };
      return { id: device.id, keyId: issued.id, key: issued.key };
    };
    const devices: { id: string; key: string }[] = [];
    for (let i = 0; i < options.devices; i++) devices.push(await newDevice(`soak ${i}`));
    const revocable: { id: string; keyId: string; key: string }[] = [];
    for (let i = 0; i < REVOKED_DEVICES; i++) revocable.push(await newDevice(`revoked ${i}`));
    log(`service on ${port}, ${devices.length} devices; load for ${options.durationS} s`);

    const startedAt = Date.now();
    const deadline = startedAt + options.durationS * 1000;
    const outage = async (what: string, atFraction: number, stop: () => Promise<void>, start: () => Promise<void>) => {
      await sleep(Math.max(0, startedAt + options.durationS * 1000 * atFraction - Date.now()));
      const downAt = Date.now();
      await stop();
      log(`${what} stopped`);
      await sleep(options.outageS * 1000);
      await start();
      report.faults.push(`${what}: down ${((Date.now() - downAt) / 1000).toFixed(1)} s from +${((downAt - startedAt) / 1000).toFixed(0)} s`);
      log(`${what} started again`);
    };
    const faults = (async () => {
      await outage('Kafka', 0.15, kafka.stop, kafka.start);
      await outage('Redis', 0.45, redis.stop, redis.start);
      await outage('Postgres', 0.7, postgres.stop, postgres.start);
    })();

    /**
     * Sends a request as a careful platform client does: retried after
     * `retryOn` statuses, timeouts and connection errors
     * (each retry counted under `kind`). Ends with the first other status, or
     * 0 when the soak gave up or the service is gone, and says whether it
     * had to retry.
     */
    const sendRetried = async (
      kind: string,
      path: string,
      headers: Record<string, string>,
      body: string | undefined,
      timeoutMs: number,
      retryOn: readonly number[],
      method = 'POST',
    ): Promise<{ status: number; retried: boolean }> => {
      for (let attempt = 0; !givenUp && running.exitCode === null && running.signalCode === null; attempt++) {
        let status = 0;
        try {
          status = (await request(port, method, path, headers, body, timeoutMs)).status;
        } catch {
          status = 0;
        }
        if (status === 500) report.serverErrors++;
        if (status !== 0 && !retryOn.includes(status)) return { status, retried: attempt > 0 };
        count(report.outcomes, kind, status === 0 ? 'retried (no answer)' : `retried (${status})`);
        await sleep(EVENT_RETRY_MS);
      }
      return { status: 0, retried: true };
    };
    // Events reach the service through the simulation's HTTP action, which
    // retries and drops them as EMQX does; every attempt is counted here by
    // kind, and the attempts of each telemetry message.
    const attempts = new Map<string, number>();
    const toService = httpTransport(`http://127.0.0.1:${port}`);
    const counted: ServiceTransport = async (rendered, signal) => {
      const event = JSON.parse(rendered.body) as { event?: string; id?: string };
      const kind = event.event === 'message.publish' ? 'telemetry' : 'session and delivery events';
      if (kind === 'telemetry' && event.id) attempts.set(event.id, (attempts.get(event.id) ?? 0) + 1);
      try {
        const answer = await toService(rendered, signal);
        if (answer.status === 500) report.serverErrors++;
        const outcome = actionOutcome(answer.status);
        count(report.outcomes, kind, outcome === 'done' ? 'acknowledged' : outcome === 'retry' ? `retried (${answer.status})` : `dropped (${answer.status})`);
        return answer;
      } catch (error) {
        count(report.outcomes, kind, 'retried (no answer)');
        throw error;
      }
    };
    emqx.useService(counted);

    // Every device online with a QoS 1 subscription to its command topic, as its authn answer would have it.
    const clientAttrs = (deviceId: string) => ({ tenant_id: TENANT, device_id: deviceId });
    for (const device of devices) await emqx.subscribe(device.id, `devices/${device.id}/commands`, { qos: 1, clientAttrs: clientAttrs(device.id) });
    for (const device of revocable) await emqx.connect(device.id, { clientAttrs: clientAttrs(device.id) });

    /** The answer as EMQX reads it (5 s is its request timeout), or the status when there is none to read. */
    const answerOf = async (path: string, body: object): Promise<string> => {
      try {
        const answer = await request(port, 'POST', path, hook, JSON.stringify(body), 5000);
        if (answer.status === 500) report.serverErrors++;
        if (answer.status === 200) return (JSON.parse(answer.body) as { result: string }).result;
        return `http_${answer.status}`;
      } catch {
        return 'no_answer';
      }
    };

    const authn = async () => {
      while (Date.now() < deadline) {
        const device = pick(devices);
        const wrong = Math.random() < 0.1;
        const password = wrong ? `${device.key.slice(0, -1)}${device.key.endsWith('A') ? 'B' : 'A'}` : device.key;
        const result = await answerOf('/emqx/authn', { clientid: device.id, username: device.id, password, peerhost: `10.7.${Math.floor(Math.random() * 250)}.1` });
        count(report.outcomes, wrong ? 'authn (wrong key)' : 'authn', result);
        if (wrong && result === 'allow') report.wrongAllows++;
      }
    };
    const authz = async () => {
      while (Date.now() < deadline) {
        const device = pick(devices);
        const foreign = Math.random() < 0.5;
        const topic = `devices/${foreign ? pick(devices.filter((other) => other.id !== device.id)).id : device.id}/telemetry`;
        const result = await answerOf('/emqx/authz', { clientid: device.id, username: device.id, topic, action: 'publish', qos: '1', retain: 'false' });
        count(report.outcomes, foreign ? 'authz (foreign topic)' : 'authz', result);
        if (foreign && result === 'allow') report.wrongAllows++;
      }
    };

    // Telemetry: each device publishes as a client of the simulation, whose telemetry rule sends it on.
    const acknowledged = new Set<string>();
    const retried = new Set<string>();
    let inFlight = 0;
    const deliver = async (deviceId: string, payload: string) => {
      let sent: ReturnType<typeof emqx.publish>;
      try {
        sent = emqx.publish(deviceId, `devices/${deviceId}/telemetry`, payload, { qos: 1 });
      } catch {
        count(report.outcomes, 'telemetry', 'not sent (device not connected)');
        return;
      }
      const { id, delivered } = sent;
      const [result] = await delivered;
      if ((attempts.get(id) ?? 0) > 1) retried.add(id);
      attempts.delete(id);
      if (result?.outcome === 'delivered') acknowledged.add(id);
      else if (result?.outcome === 'dropped') report.telemetry.dropped++;
    };
    const deliveries: Promise<void>[] = [];
    const telemetry = async () => {
      while (Date.now() < deadline) {
        if (inFlight >= TELEMETRY_IN_FLIGHT) {
          await sleep(5);
          continue;
        }
        const device = pick(devices);
        const payload = JSON.stringify({ temperature: 20 + Math.random() * 5, state: 'running' });
        inFlight++;
        deliveries.push(deliver(device.id, payload).finally(() => inFlight--));
      }
    };

    // Keys revoked one after another through the run (through the outages too),
    // each while its device is connected; CONNECTs keep trying the revoked keys.
    const revoked: { id: string; key: string; at: number }[] = [];
    const revocations = async () => {
      const kind = 'revocations (REST)';
      for (const device of revocable) {
        await sleep((options.durationS * 1000) / (REVOKED_DEVICES + 1));
        if (Date.now() >= deadline) return;
        const { status } = await sendRetried(kind, `/v1/devices/${device.id}/keys/${device.keyId}`, admin, undefined, 10_000, [503], 'DELETE');
        if (status === 204) revoked.push({ id: device.id, key: device.key, at: Date.now() });
        count(report.outcomes, kind, status === 204 ? 'revoked' : `refused (${status})`);
      }
    };
    const revokedAuthn = async () => {
      while (Date.now() < deadline) {
        const device = revoked.length > 0 ? pick(revoked) : null;
        if (!device) {
          await sleep(100);
          continue;
        }
        const sentAt = Date.now();
        const result = await answerOf('/emqx/authn', { clientid: device.id, username: device.id, password: device.key, peerhost: '10.8.0.1' });
        count(report.outcomes, 'authn (revoked key)', result);
        // The replica that revoked answered only once it had applied the change.
        if (result === 'allow' && sentAt > device.at) report.revocations.allowedAfter++;
      }
    };

    // Commands from the platform: one create at a time, retried with the same
    // Idempotency-Key until it is answered 202 (or refused for good).
    let commandSequence = 0;
    const commands = async () => {
      const kind = 'commands (REST create)';
      while (Date.now() < deadline) {
        const device = pick(devices);
        const key = `soak-${commandSequence++}`;
        const body = JSON.stringify({ name: 'soak', params: { n: commandSequence } });
        const { status } = await sendRetried(kind, `/v1/devices/${device.id}/commands`, { ...admin, 'idempotency-key': key }, body, 10_000, [503]);
        if (status === 0) return;
        if (status === 202) report.commands.created++;
        count(report.outcomes, kind, status === 202 ? 'created' : `refused (${status})`);
        await sleep(COMMAND_INTERVAL_MS);
      }
    };

    await Promise.all([authn(), authn(), authn(), authz(), authz(), telemetry(), telemetry(), commands(), revocations(), revokedAuthn(), faults]);
    log(`load stopped; waiting for ${inFlight} retried deliveries`);
    const exited = new Promise<boolean>((resolve) => (running.exitCode !== null || running.signalCode !== null ? resolve(false) : running.once('exit', () => resolve(false))));
    const settled = await Promise.race([Promise.all(deliveries).then(() => true), sleep(180_000, undefined, { ref: false }).then(() => false), exited]);
    if (!settled) {
      report.telemetry.unfinished = inFlight;
      givenUp = true;
    }
    clearInterval(sampler);
    if (running.exitCode !== null || running.signalCode !== null) {
      report.failures.push(`the service exited (${running.exitCode ?? running.signalCode}) under load; its last output:\n${service.output()}`);
    }

    log('waiting for the sessions of revoked keys to be ended');
    report.revocations.revoked = revoked.length;
    const kicked = (deviceId: string) => emqx.calls.some((call) => call.method === 'DELETE' && call.clientId === deviceId && call.authorized);
    for (const until = Date.now() + KICK_SETTLE_MS; revoked.some((device) => !kicked(device.id)) && Date.now() < until; ) await sleep(500);
    report.revocations.sessionsNotEnded = revoked.filter((device) => !kicked(device.id)).length;

    log('waiting for every command to be acked');
    Object.assign(report.commands, await followCommands(postgres.url, report.commands.created));
    report.commands.droppedEvents = emqx.events.filter((sent) => sent.outcome === 'dropped' && sent.event.event !== 'message.publish').length;
    const publishedOk = new Map<string, number>();
    for (const message of emqx.published) {
      if (message.status !== 200) continue;
      const commandId = (JSON.parse(message.body.payload as string) as { command_id: string }).command_id;
      publishedOk.set(commandId, (publishedOk.get(commandId) ?? 0) + 1);
    }
    report.commands.deliveredTwice = [...publishedOk.values()].filter((n) => n > 1).length;

    log('consuming telemetry.raw back');
    const messageIdOf = (record: { value: string | null }) => (JSON.parse(record.value ?? '{}') as { message_id?: string }).message_id ?? '';
    // Read until every acknowledged message was seen, not until as many
    // records came: retries during the outages add duplicates, which would
    // end the reading early on a slow machine.
    const unseen = new Set(acknowledged);
    const records = await consumeRecords([createTopicNames(prefix).telemetryRaw(TENANT)], acknowledged.size, {
      brokers: kafka.brokers,
      timeoutMs: 120_000,
      settleMs: 5000,
      until: (record) => {
        unseen.delete(messageIdOf(record));
        return unseen.size === 0;
      },
    });
    const copies = new Map<string, number>();
    for (const record of records) {
      const id = messageIdOf(record);
      copies.set(id, (copies.get(id) ?? 0) + 1);
    }
    report.telemetry.acknowledged = acknowledged.size;
    for (const id of acknowledged) if (!copies.has(id)) report.telemetry.lost++;
    for (const [id, n] of copies) {
      if (n < 2) continue;
      report.telemetry.duplicated++;
      if (!retried.has(id)) report.telemetry.duplicatedWithoutRetry++;
    }
  } finally {
    givenUp = true;
    const child = service?.child;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(25_000, undefined, { ref: false })]);
    }
    await Promise.allSettled([kafka.destroy(), redis.stop(), postgres.destroy(), emqx.close()]);
  }

  const { telemetry } = report;
  if (telemetry.lost > 0) report.failures.push(`${telemetry.lost} acknowledged messages lost`);
  if (telemetry.duplicatedWithoutRetry > 0) report.failures.push(`${telemetry.duplicatedWithoutRetry} messages duplicated though delivered once`);
  if (telemetry.dropped > 0) report.failures.push(`${telemetry.dropped} events answered a status EMQX drops`);
  if (telemetry.unfinished > 0) report.failures.push(`${telemetry.unfinished} events still retried after 3 minutes`);
  const { commands } = report;
  if (commands.stored !== commands.created) report.failures.push(`${commands.created} commands answered 202, ${commands.stored} stored`);
  if (commands.notAcked > 0) report.failures.push(`${commands.notAcked} commands not acked ${COMMAND_SETTLE_MS / 1000} s after the load`);
  if (commands.storedTwice > 0) report.failures.push(`${commands.storedTwice} idempotency keys stored twice`);
  if (commands.droppedEvents > 0) report.failures.push(`${commands.droppedEvents} delivery events answered a status EMQX drops`);
  if (report.wrongAllows > 0) report.failures.push(`${report.wrongAllows} wrong allows`);
  const { revocations } = report;
  if (revocations.allowedAfter > 0) report.failures.push(`${revocations.allowedAfter} CONNECTs allowed with a key already revoked`);
  if (revocations.sessionsNotEnded > 0) report.failures.push(`${revocations.sessionsNotEnded} sessions of revoked keys not ended`);
  if (revocations.revoked === 0) report.failures.push('no key was revoked during the run');
  if (report.serverErrors > 0) report.failures.push(`${report.serverErrors} answers of 500; the service logged:\n${service.errorLines().join('\n')}`);
  return report;
}

/** Waits until every stored command is acked (or the wait ends), then counts them. */
async function followCommands(databaseUrl: string, created: number): Promise<Pick<SoakReport['commands'], 'stored' | 'acked' | 'notAcked' | 'storedTwice'>> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    const counts = async () => {
      const { rows } = await pool.query<{ stored: string; acked: string; keys: string }>(
        `SELECT count(*) AS stored, count(*) FILTER (WHERE state = 'acked') AS acked, count(DISTINCT idempotency_key) AS keys
           FROM commands WHERE tenant_id = $1`,
        [TENANT],
      );
      const row = rows[0]!;
      return { stored: Number(row.stored), acked: Number(row.acked), keys: Number(row.keys) };
    };
    const until = Date.now() + COMMAND_SETTLE_MS;
    let now = await counts();
    while ((now.acked < now.stored || now.stored < created) && Date.now() < until) {
      await sleep(1000);
      now = await counts();
    }
    return { stored: now.stored, acked: now.acked, notAcked: now.stored - now.acked, storedTwice: now.stored - now.keys };
  } finally {
    await pool.end();
  }
}

/** The report as the table `npm run soak` prints. */
export function formatReport(report: SoakReport): string {
  const lines = ['', 'requests by outcome'];
  for (const [kind, outcomes] of Object.entries(report.outcomes).sort()) {
    lines.push(`  ${kind.padEnd(24)} ${Object.entries(outcomes).sort().map(([outcome, n]) => `${outcome} ${n}`).join(', ')}`);
  }
  const { telemetry } = report;
  lines.push(
    '',
    `faults                    ${report.faults.join('; ')}`,
    `telemetry acknowledged    ${telemetry.acknowledged}`,
    `  lost                    ${telemetry.lost} (must be 0)`,
    `  duplicated              ${telemetry.duplicated} (${telemetry.duplicatedWithoutRetry} of them delivered once: must be 0; the others were retried by EMQX after a 503 or no answer, see docs/telemetry.md, "Duplicates")`,
    `  dropped by EMQX         ${telemetry.dropped} (must be 0)`,
    `commands created (202)    ${report.commands.created}`,
    `  stored                  ${report.commands.stored} (must equal created: one per Idempotency-Key)`,
    `  acked                   ${report.commands.acked}; not acked ${report.commands.notAcked} (must be 0)`,
    `  published twice         ${report.commands.deliveredTwice} (accepted by EMQX more than once: the device gets that command_id again and treats it as a repeat)`,
    `  events dropped by EMQX  ${report.commands.droppedEvents} (must be 0)`,
    `keys revoked              ${report.revocations.revoked} (through the outages)`,
    `  allowed after revoking  ${report.revocations.allowedAfter} (must be 0)`,
    `  sessions not ended      ${report.revocations.sessionsNotEnded} (must be 0)`,
    `wrong allows              ${report.wrongAllows} (must be 0)`,
    `500 answers               ${report.serverErrors} (must be 0)`,
    `service RSS peak          ${report.rssPeakMb} MB`,
    '',
    report.failures.length === 0 ? 'PASSED' : `FAILED: ${report.failures.join('; ')}`,
  );
  return lines.join('\n');
}
