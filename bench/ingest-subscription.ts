// The telemetry scenario's other half: the same messages read by the service
// from an MQTT 5 shared subscription (INGEST_MQTT_URL) on a private Mosquitto
// (scripts/mosquitto.sh), measured in the same rounds as the webhook. Devices
// publish at QoS 1 with a `message_id` user property (so the dedup window is
// used as with EMQX's ids); the service's CPU per message is its CPU time over
// the messages it produced meanwhile (`devicelink_telemetry_accepted_total`). Afterwards
// every message the broker took is looked for in telemetry.raw.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { createTopicNames } from '../src/lib/topics.js';
import { consumeRecords } from '../test/helpers/kafka.js';
import { freePort } from '../test/helpers/ports.js';
import { median, seedBenchTenant, startServer, type Server } from './support.js';

const run = promisify(execFile);
const TENANT = 'bench-subscribe';
const DEVICES = 100;
/** Messages published and not yet produced by the service, at most: keeps the broker's queues (and memory) bounded. */
const WINDOW = Number(process.env.BENCH_SUBSCRIPTION_WINDOW ?? 20_000);
const SALT = randomBytes(8).toString('hex').toUpperCase();
const idOf = (sequence: number) => `${sequence.toString(16).toUpperCase().padStart(16, '0')}${SALT}`;
const sequenceOf = (id: string) => (id.length === 32 && id.endsWith(SALT) ? Number.parseInt(id.slice(0, 16), 16) : -1);

export interface SubscriptionBench {
  /** One measured round of `durationS`: the service's CPU µs per message produced. */
  round(durationS: number): Promise<number>;
  /** Publishing for `durationS` without measuring (the JIT and the broker warm up). */
  warmUp(durationS: number): Promise<void>;
  /** The median of the rounds. */
  cpuPerMessageUs(): number;
  /** Every message the broker acknowledged to its device is in telemetry.raw once. */
  verify(): Promise<string>;
  stop(): Promise<void>;
}

export async function startSubscriptionBench(options: { databaseUrl: string; env: Record<string, string> }): Promise<SubscriptionBench> {
  const topics = createTopicNames(options.env.KAFKA_TOPIC_PREFIX ?? '');
  const brokers = (options.env.KAFKA_BROKERS ?? '').split(',');
  const port = await freePort();
  const home = await mkdtemp(path.join(os.tmpdir(), 'dlm-bench-mosquitto-'));
  const password = randomBytes(18).toString('base64url');
  const brokerEnv = { ...process.env, MOSQUITTO_PORT: String(port), MOSQUITTO_HOME_DIR: home, MOSQUITTO_SERVICE_PASSWORD: password };
  const mosquitto = (...args: string[]) => run('bash', ['scripts/mosquitto.sh', ...args], { env: brokerEnv, timeout: 30_000 });
  await mosquitto('start');
  const url = `mqtt://127.0.0.1:${port}`;

  const devices = await seedBenchTenant(options, TENANT, DEVICES);

  const service: Server = await startServer('bench/app-server.mjs', {
    ...options.env,
    INGEST_MQTT_URL: url,
    INGEST_MQTT_USERNAME: 'device-link-ingest',
    INGEST_MQTT_PASSWORD: password,
    INGEST_MQTT_CLIENT_ID: `bench-${SALT.slice(0, 8)}`,
    // Mosquitto spreads a shared subscription round-robin: one member keeps each device's order.
    INGEST_MQTT_CLIENTS: '1',
    LOG_LEVEL: process.env.BENCH_SUBSCRIPTION_LOG_LEVEL ?? options.env.LOG_LEVEL ?? 'warn',
  });
  const clients: MqttClient[] = [];
  for (const id of devices) {
    await mosquitto('user', id, password);
  }
  for (const id of devices) {
    clients.push(await mqtt.connectAsync(url, { protocolVersion: 5, clientId: id, username: id, password, reconnectPeriod: 0 }));
  }

  const accepted = async () => {
    const response = await fetch(`http://127.0.0.1:${service.port}/metrics`);
    const match = /^devicelink_telemetry_accepted_total (\d+)/m.exec(await response.text());
    return Number(match?.[1] ?? 0);
  };

  let sequence = 0;
  let brokerAcked = new Uint8Array(1 << 20);
  let brokerAckedCount = 0;
  const rounds: number[] = [];

  // The service subscribes in the background once started: a message published
  // before the group exists reaches nobody. Probes (not counted) until one is produced.
  const first = devices[0] ?? '';
  for (let attempt = 0; (await accepted()) === 0; attempt++) {
    if (attempt === 120) throw new Error('the service did not take telemetry from its subscription within 60 s');
    await clients[0]?.publishAsync(`devices/${first}/telemetry`, '{"probe":1}', { qos: 1, properties: { userProperties: { message_id: idOf(sequence++) } } });
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  let produced = await accepted();
  const base = sequence - produced;

  /** Each device publishes in turn while fewer than WINDOW messages wait for the service. */
  async function publishFor(durationS: number) {
    const until = performance.now() + durationS * 1000;
    let stop = false;
    const watcher = (async () => {
      while (!stop) {
        produced = await accepted();
        // Rarely: each look renders the service's whole /metrics, which costs it CPU.
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    })();
    await Promise.all(
      clients.map(async (client, index) => {
        const device = devices[index] ?? '';
        while (performance.now() < until) {
          if (sequence - base - produced > WINDOW) {
            await new Promise((resolve) => setTimeout(resolve, 5));
            continue;
          }
          const n = sequence++;
          const payload = JSON.stringify({ temperature: 20 + (n % 100) / 10, humidity: 40 + (n % 30), state: 'running' });
          await client.publishAsync(`devices/${device}/telemetry`, payload, { qos: 1, properties: { userProperties: { message_id: idOf(n) } } });
          if (n >= brokerAcked.length) {
            const grown = new Uint8Array(Math.max(brokerAcked.length * 2, n + 1));
            grown.set(brokerAcked);
            brokerAcked = grown;
          }
          brokerAcked[n] = 1;
          brokerAckedCount++;
        }
      }),
    );
    stop = true;
    await watcher;
  }

  return {
    async warmUp(durationS) {
      await publishFor(durationS);
    },
    async round(durationS) {
      const before = await accepted();
      const cpuBefore = service.cpuSeconds();
      await publishFor(durationS);
      const cpu = service.cpuSeconds() - cpuBefore;
      const after = await accepted();
      const us = (cpu / Math.max(1, after - before)) * 1e6;
      rounds.push(us);
      return us;
    },
    cpuPerMessageUs: () => median(rounds),
    async verify() {
      const records = await consumeRecords([topics.telemetryRaw(TENANT)], brokerAckedCount, { brokers: brokers.join(','), timeoutMs: 180_000, settleMs: 5000 });
      const copies = new Uint32Array(sequence);
      let foreign = 0;
      for (const record of records) {
        const id = (JSON.parse(record.value ?? '{}') as { message_id?: string }).message_id ?? '';
        const n = sequenceOf(id);
        if (n >= 0 && n < sequence) copies[n]! += 1;
        else foreign++;
      }
      let missing = 0;
      let duplicated = 0;
      for (let n = 0; n < sequence; n++) {
        if (brokerAcked[n] === 1 && (copies[n] ?? 0) === 0) missing++;
        if ((copies[n] ?? 0) > 1) duplicated++;
      }
      const verdict = missing === 0 && duplicated === 0 && foreign === 0 ? 'OK' : 'FAILED';
      return `zero loss (subscription): ${brokerAckedCount} messages acknowledged by the broker to their devices, ${records.length} records consumed back, ${missing} missing, ${duplicated} duplicated, ${foreign} not sent by this run — ${verdict}`;
    },
    async stop() {
      await Promise.allSettled(clients.map((client) => client.endAsync(true)));
      await service.stop();
      await mosquitto('purge').catch(() => undefined);
      await rm(home, { recursive: true, force: true });
    },
  };
}
