import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import type { DecoderConfig } from '../../src/lib/decoder-config.js';
import { TEST_HOOK_TOKEN } from './env.js';

/** An EMQX message id: 16 random bytes in upper-case hex, as EMQX renders them. */
export function messageId(): string {
  return randomBytes(16).toString('hex').toUpperCase();
}

export interface PublishEventOptions {
  id?: string;
  publishReceivedAt?: number;
  [field: string]: unknown;
}

/** A `message.publish` event as our shipped rule sends it (docs/emqx-contract.md §C). */
export function publishEvent(deviceId: string, payload: string, options: PublishEventOptions = {}) {
  const { id = messageId(), publishReceivedAt = Date.now(), ...fields } = options;
  return {
    event: 'message.publish',
    id,
    clientid: deviceId,
    username: deviceId,
    topic: `devices/${deviceId}/telemetry`,
    payload,
    qos: 1,
    flags: { dup: false, retain: false },
    pub_props: {},
    peerhost: '10.0.0.7',
    publish_received_at: publishReceivedAt,
    timestamp: publishReceivedAt,
    node: 'emqx@127.0.0.1',
    metadata: { rule_id: 'device_telemetry' },
    ...fields,
  };
}

export function postEvent(app: FastifyInstance, body: object) {
  return app.inject({
    method: 'POST',
    url: '/emqx/events',
    headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}`, 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });
}

/** Registry rows written directly: these tests are about ingestion, not the admin API. */
export function createRegistrySeeder(databaseUrl: string) {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  return {
    async tenant(id: string) {
      await pool.query('INSERT INTO tenants (id, name) VALUES ($1, $1)', [id]);
    },
    async device(tenantId: string, options: { decoder?: DecoderConfig; disabled?: boolean } = {}) {
      const id = randomUUID();
      await pool.query('INSERT INTO devices (id, tenant_id, name, disabled, decoder) VALUES ($1, $2, $3, $4, $5)', [
        id,
        tenantId,
        `device ${id.slice(0, 8)}`,
        options.disabled ?? false,
        options.decoder ? JSON.stringify(options.decoder) : null,
      ]);
      return id;
    },
    close: () => pool.end(),
  };
}
