// The command scenario: POST /v1/devices/{id}/commands over 1,000 devices,
// each command published to the EMQX simulation, whose programmatic clients
// are subscribed and ack at once, and whose rules post the delivered and
// acked events back to the service's /emqx/events. Measured: the creates;
// verified afterwards: every command created reached acked.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createKafka } from '../src/infra/kafka.js';
import { createTopicNames } from '../src/lib/topics.js';
import type { EmqxSim } from '../dev/emqx-sim/emqx-sim.js';
import { httpTransport } from '../dev/emqx-sim/service.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/env.js';
import type { LoadSpec } from './support.js';

const TENANT = 'bench-commands';
const DEVICES = 1000;
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };

export function createCommandScenario(options: { databaseUrl: string; env: Record<string, string>; emqx: EmqxSim }) {
  const topics = createTopicNames(options.env.KAFKA_TOPIC_PREFIX ?? '');
  const { emqx } = options;
  let createdOk = 0;
  let barePort = 0;

  return {
    name: 'POST …/commands → acked',
    async spec(app: { port: number }, bare: { port: number }): Promise<LoadSpec> {
      barePort = bare.port;
      const devices = Array.from({ length: DEVICES }, () => randomUUID());
      const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 1 });
      try {
        await pool.query('INSERT INTO tenants (id, name) VALUES ($1, $1)', [TENANT]);
        await pool.query("INSERT INTO devices (id, tenant_id, name) SELECT id, $1, 'bench' FROM unnest($2::uuid[]) AS id", [TENANT, devices]);
      } finally {
        await pool.end();
      }
      const kafka = createKafka({ brokers: (options.env.KAFKA_BROKERS ?? '').split(','), clientId: 'dlm-bench' }, quiet);
      try {
        await kafka.ensureTopics(topics.forTenant(TENANT), {
          partitions: Number(options.env.KAFKA_TOPIC_PARTITIONS ?? 6),
          replicationFactor: Number(options.env.KAFKA_TOPIC_REPLICATION_FACTOR ?? 1),
        });
      } finally {
        await kafka.close();
      }
      // Every device online and subscribed at QoS 1 before the simulation reports to the service.
      for (const device of devices) await emqx.subscribe(device, `devices/${device}/commands`);
      emqx.sendEventsTo(httpTransport(`http://127.0.0.1:${app.port}`));
      return {
        method: 'POST',
        path: `/v1/devices/${devices[0]}/commands`,
        paths: devices.map((device) => `/v1/devices/${device}/commands`),
        headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
        body: JSON.stringify({ name: 'bench', params: { mode: 'eco', level: 3 } }),
        onResponse(status, _body, answeredBy) {
          if (answeredBy !== barePort && status === 202) createdOk++;
        },
      };
    },
    /** Every command answered 202 ends acked: waits for the simulation's events to settle. */
    async verify(): Promise<string> {
      const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 1 });
      const started = performance.now();
      try {
        let counts = { total: 0, acked: 0 };
        for (;;) {
          const { rows } = await pool.query<{ total: string; acked: string }>(
            "SELECT count(*) AS total, count(*) FILTER (WHERE state = 'acked') AS acked FROM commands WHERE tenant_id = $1",
            [TENANT],
          );
          counts = { total: Number(rows[0]?.total ?? 0), acked: Number(rows[0]?.acked ?? 0) };
          if (counts.acked === counts.total || performance.now() - started > 120_000) break;
          await sleep(500);
        }
        await emqx.settle();
        const unfinished = counts.total - counts.acked;
        const verdict = unfinished === 0 && counts.total >= createdOk ? 'OK' : 'FAILED';
        return `create → acked: ${createdOk} commands answered 202, ${counts.total} stored, ${counts.acked} acked, ${unfinished} not acked ${((performance.now() - started) / 1000).toFixed(1)} s after the last run — ${verdict}`;
      } finally {
        await pool.end();
      }
    },
  };
}
