// The telemetry-ingest scenario: message.publish events, each with its own
// message id, into Kafka with acks from all in-sync replicas; afterwards every
// record is consumed back and counted (zero loss, no duplicates).
import { randomBytes } from 'node:crypto';
import { createTopicNames } from '../src/lib/topics.js';
import { consumeRecords } from '../test/helpers/kafka.js';
import { TEST_HOOK_TOKEN } from '../test/helpers/env.js';
import { seedBenchTenant, type LoadSpec } from './support.js';

const TENANT = 'bench-ingest';
const DEVICES = 100;
const ID_AT = '{"event":"message.publish","id":"'.length;
/** Message ids are the sequence number in 16 hex digits, then this run's salt: 32 hex digits, as EMQX's. */
const ID_SALT = randomBytes(8).toString('hex').toUpperCase();
const idOf = (sequence: number) => `${sequence.toString(16).toUpperCase().padStart(16, '0')}${ID_SALT}`;
/** The sequence number of an id of this run, or -1. */
const sequenceOf = (id: string) => (id.length === 32 && id.endsWith(ID_SALT) ? Number.parseInt(id.slice(0, 16), 16) : -1);

export function createIngestScenario(options: { databaseUrl: string; env: Record<string, string> }) {
  const topics = createTopicNames(options.env.KAFKA_TOPIC_PREFIX ?? '');
  const brokers = (options.env.KAFKA_BROKERS ?? '').split(',');
  let sequence = 0;
  // Which sequence numbers the service answered 2xx for (the bare server's
  // answers do not count), one byte each: keeping no strings keeps the load
  // generator's own work per answer as small as on the bare side.
  let acknowledged = new Uint8Array(1 << 20);
  let acknowledgedCount = 0;
  let barePort = 0;

  return {
    name: 'POST /emqx/events telemetry',
    target: 0.4,
    async spec(_app: { port: number }, bare: { port: number }): Promise<LoadSpec> {
      barePort = bare.port;
      const devices = await seedBenchTenant(options, TENANT, DEVICES);
      return {
        method: 'POST',
        path: '/emqx/events',
        // The local broker is a JVM: it compiles its produce path over its first
        // few hundred thousand records, and until then costs several times the
        // CPU per record that it does warm, on the same two cores as the service.
        // The rounds measure the steady state, as with a broker that has been up.
        warmupS: Number(process.env.BENCH_INGEST_WARMUP_S ?? 30),
        headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` },
        onResponse(status, requestBody, answeredBy) {
          if (status < 200 || status > 299 || answeredBy === barePort) return;
          // The id sits at a fixed place at the start of the body (see nextBody).
          const answered = Number.parseInt(requestBody.slice(ID_AT, ID_AT + 16), 16);
          if (answered >= acknowledged.length) {
            const grown = new Uint8Array(Math.max(acknowledged.length * 2, answered + 1));
            grown.set(acknowledged);
            acknowledged = grown;
          }
          if (acknowledged[answered] === 0) acknowledgedCount++;
          acknowledged[answered] = 1;
        },
        nextBody() {
          const n = sequence++;
          const device = devices[n % DEVICES] ?? '';
          const now = Date.now();
          return JSON.stringify({
            event: 'message.publish',
            id: idOf(n),
            clientid: device,
            username: device,
            topic: `devices/${device}/telemetry`,
            payload: JSON.stringify({ temperature: 20 + (n % 100) / 10, humidity: 40 + (n % 30), state: 'running' }),
            qos: 1,
            flags: { dup: false, retain: false },
            pub_props: {},
            peerhost: '10.0.0.7',
            publish_received_at: now,
            timestamp: now,
            node: 'emqx@127.0.0.1',
            client_attrs: { tenant_id: TENANT },
            metadata: { rule_id: 'device_telemetry' },
          });
        },
      };
    },
    /**
     * Every message answered 2xx must be in telemetry.raw exactly once. Records
     * beyond those are requests still in flight when a run's time was up (the
     * load generator drops their answers), at most one per connection and run.
     */
    async verify(answeredOk: number): Promise<string> {
      const records = await consumeRecords([topics.telemetryRaw(TENANT)], answeredOk, {
        brokers: brokers.join(','),
        timeoutMs: 180_000,
        settleMs: 5000,
      });
      const copies = new Uint32Array(sequence);
      let foreign = 0;
      for (const record of records) {
        const id = (JSON.parse(record.value ?? '{}') as { message_id?: string }).message_id ?? '';
        const produced = sequenceOf(id);
        if (produced >= 0 && produced < sequence) copies[produced]! += 1;
        else foreign++;
      }
      let missing = 0;
      let duplicated = 0;
      let unanswered = 0;
      for (let n = 0; n < sequence; n++) {
        const count = copies[n] ?? 0;
        if (count > 1) duplicated++;
        if (acknowledged[n] === 1 && count === 0) missing++;
        if (acknowledged[n] !== 1 && count > 0) unanswered++;
      }
      const verdict =
        missing === 0 && duplicated === 0 && foreign === 0 && acknowledgedCount === answeredOk ? 'OK' : 'FAILED';
      return `zero loss: ${acknowledgedCount} messages answered 2xx (autocannon counted ${answeredOk}), ${records.length} records consumed back, ${missing} missing, ${duplicated} duplicated, ${foreign} not sent by this run, ${unanswered} produced for requests cut off at the end of a run — ${verdict}`;
    },
  };
}
