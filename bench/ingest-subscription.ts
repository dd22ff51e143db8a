// The telemetry scenario's other half: the same messages read by the service
// from an MQTT 5 shared subscription (INGEST_MQTT_URL) on a private Mosquitto
// (scripts/mosquitto.sh), measured in the same rounds as the webhook. Devices
// publish at QoS 1 with a `message_id` user property (so the dedup window is
// used as with EMQX's ids); the service's CPU per message is its CPU time over
// the messages it produced meanwhile (`devicelink_telemetry_accepted_total`). Afterwards
// every message the broker took is looked for in telemetry.raw. With another
// build to compare (BENCH_COMPARE and friends), that build reads the same
// messages at the same time through a share group of its own, with Redis and
// Kafka prefixes of its own: each round measures both on the same stream.
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
/** Devices publishing (BENCH_SUBSCRIPTION_DEVICES), each one message at a time; fewer devices means more of each device's messages wait behind one another. */
const DEVICES = Number(process.env.BENCH_SUBSCRIPTION_DEVICES ?? 100);
/** Messages published and not yet produced by the service, at most: keeps the broker's queues (and memory) bounded. */
const WINDOW = Number(process.env.BENCH_SUBSCRIPTION_WINDOW ?? 20_000);
const SALT = randomBytes(8).toString('hex').toUpperCase();
const idOf = (sequence: number) => `${sequence.toString(16).toUpperCase().padStart(16, '0')}${SALT}`;
const sequenceOf = (id: string) => (id.length === 32 && id.endsWith(SALT) ? Number.parseInt(id.slice(0, 16), 16) : -1);

/** Another build (or node, or settings) to measure on the same messages. */
export interface OtherService {
  script: string;
  env: Record<string, string>;
  node?: string;
}

export interface SubscriptionBench {
  /** One measured round of `durationS`: the service's CPU µs per message produced. */
  round(durationS: number): Promise<number>;
  /** Publishing for `durationS` without measuring (the JIT and the broker warm up). */
  warmUp(durationS: number): Promise<void>;
  /** The median of the rounds. */
  cpuPerMessageUs(): number;
  /** The subscribing service's resident memory now, in MB. */
  rssMb(): number;
  /** The ports of the subscribing services (this build's, then the other's): to serve them the mixed requests too. */
  ports(): number[];
  /** The other service's median, and the median over rounds of the CPU per message this build saves against it. */
  other(): { cpuPerMessageUs: number; cpuSaving: number } | null;
  /** Every message the broker acknowledged to its device is in telemetry.raw once. */
  verify(): Promise<string>;
  stop(): Promise<void>;
}

const OTHER_GROUP = 'bench-other';
/** The service identity scripts/mosquitto.sh gives the shared subscription to. */
const SERVICE_USER = 'device-link-ingest';

export async function startSubscriptionBench(options: { databaseUrl: string; env: Record<string, string>; other?: OtherService }): Promise<SubscriptionBench> {
  const topics = createTopicNames(options.env.KAFKA_TOPIC_PREFIX ?? '');
  const brokers = (options.env.KAFKA_BROKERS ?? '').split(',');
  const port = await freePort();
  const home = await mkdtemp(path.join(os.tmpdir(), 'dlm-bench-mosquitto-'));
  const password = randomBytes(18).toString('base64url');
  const brokerEnv = {
    ...process.env,
    MOSQUITTO_PORT: String(port),
    MOSQUITTO_HOME_DIR: home,
    MOSQUITTO_SERVICE_PASSWORD: password,
    ...(options.other ? { MOSQUITTO_ACL_EXTRA: `user ${SERVICE_USER}\ntopic read $share/${OTHER_GROUP}/devices/+/telemetry` } : {}),
  };
  const mosquitto = (...args: string[]) => run('bash', ['scripts/mosquitto.sh', ...args], { env: brokerEnv, timeout: 30_000 });
  await mosquitto('start');
  const url = `mqtt://127.0.0.1:${port}`;

  const devices = await seedBenchTenant(options, TENANT, DEVICES);

  const subscribing = {
    INGEST_MQTT_URL: url,
    INGEST_MQTT_USERNAME: SERVICE_USER,
    INGEST_MQTT_PASSWORD: password,
    INGEST_MQTT_CLIENT_ID: `bench-${SALT.slice(0, 8)}`,
    // Mosquitto spreads a shared subscription round-robin: one member keeps each device's order.
    INGEST_MQTT_CLIENTS: '1',
    LOG_LEVEL: process.env.BENCH_SUBSCRIPTION_LOG_LEVEL ?? options.env.LOG_LEVEL ?? 'warn',
  };
  const service: Server = await startServer('bench/app-server.mjs', { ...options.env, ...subscribing });
  const other: Server | null = options.other
    ? await startServer(
        options.other.script,
        {
          ...options.env,
          ...options.other.env,
          ...subscribing,
          INGEST_MQTT_SHARE_GROUP: OTHER_GROUP,
          INGEST_MQTT_CLIENT_ID: `bench-other-${SALT.slice(0, 8)}`,
          // Its own dedup marks and topics: each build produces every message once.
          REDIS_KEY_PREFIX: `${options.env.REDIS_KEY_PREFIX ?? ''}other:`,
          KAFKA_TOPIC_PREFIX: `${options.env.KAFKA_TOPIC_PREFIX ?? ''}other-`,
        },
        options.other.node,
      )
    : null;
  const clients: MqttClient[] = [];
  await mosquitto('users', password, ...devices);
  for (const id of devices) {
    clients.push(await mqtt.connectAsync(url, { protocolVersion: 5, clientId: id, username: id, password, reconnectPeriod: 0 }));
  }

  const metric = async (server: Server, name: string) => {
    const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    const match = new RegExp(`^${name} (\\d+)`, 'm').exec(await response.text());
    return Number(match?.[1] ?? 0);
  };
  const accepted = (server: Server = service) => metric(server, 'devicelink_telemetry_accepted_total');

  let sequence = 0;
  let brokerAcked = new Uint8Array(1 << 20);
  let brokerAckedCount = 0;
  const rounds: number[] = [];
  const otherRounds: number[] = [];

  // The service subscribes in the background once started: a message published
  // before the group exists reaches nobody. Probes (not counted) until one is produced.
  const first = devices[0] ?? '';
  for (let attempt = 0; (await accepted()) === 0 || (other !== null && (await accepted(other)) === 0); attempt++) {
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
    ports() {
      return other ? [service.port, other.port] : [service.port];
    },
    async round(durationS) {
      const servers = other ? [service, other] : [service];
      const before = await Promise.all(servers.map(async (server) => ({ accepted: await accepted(server), cpu: server.cpuSeconds() })));
      await publishFor(durationS);
      const [us = 0, otherUs] = await Promise.all(
        servers.map(async (server, index) => {
          const cpu = server.cpuSeconds() - (before[index]?.cpu ?? 0);
          return (cpu / Math.max(1, (await accepted(server)) - (before[index]?.accepted ?? 0))) * 1e6;
        }),
      );
      rounds.push(us);
      if (otherUs !== undefined) otherRounds.push(otherUs);
      return us;
    },
    cpuPerMessageUs: () => median(rounds),
    rssMb: () => service.rssMb(),
    other: () =>
      other
        ? { cpuPerMessageUs: median(otherRounds), cpuSaving: median(rounds.map((us, index) => (otherRounds[index] ?? us) / us - 1)) }
        : null,
    async verify() {
      const [batches = 0, batched = 0] = await Promise.all(['count', 'sum'].map((part) => metric(service, `devicelink_telemetry_produce_batch_records_${part}`)));
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
      return `zero loss (subscription): ${brokerAckedCount} messages acknowledged by the broker to their devices, ${records.length} records consumed back, ${missing} missing, ${duplicated} duplicated, ${foreign} not sent by this run, ${(batched / Math.max(1, batches)).toFixed(1)} records per produce request — ${verdict}`;
    },
    async stop() {
      await Promise.allSettled(clients.map((client) => client.endAsync(true)));
      await Promise.all([service.stop(), other?.stop()]);
      await mosquitto('purge').catch(() => undefined);
      await rm(home, { recursive: true, force: true });
    },
  };
}
