import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { generateApiKey } from '../../src/lib/api-key.js';
import { createKeyDigest } from '../../src/lib/key-digest.js';
import { createPasswordHasher } from '../../src/lib/password-hasher.js';
import { createTopicNames } from '../../src/lib/topics.js';
import { TEST_KEY_DIGEST_SECRET } from './env.js';
import { createTopics } from './kafka.js';

// The registry API is not part of these tests: rows are written directly, as
// the registry would commit them.
const hasher = createPasswordHasher({ memoryKib: 1024, timeCost: 1, parallelism: 1 });

/** How a seeded key is stored: as the registry stores keys now, an argon2id hash as it did before, or under another digest secret. */
export type SeededKeyStorage = 'digest' | 'argon2id' | { digestSecret: string };

export interface SeededKey {
  readonly keyId: string;
  readonly key: string;
}

export interface DeviceSeeder {
  tenant(id?: string): Promise<string>;
  device(tenantId: string, options?: { disabled?: boolean }): Promise<string>;
  key(deviceId: string, options?: { notAfter?: Date; revoked?: boolean; storage?: SeededKeyStorage }): Promise<SeededKey>;
  psk(deviceId: string, psk?: string): Promise<string>;
  query(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  close(): Promise<void>;
}

/** `topicPrefix` given: tenants get their Kafka topics too, as the registry creates them. */
export function createDeviceSeeder(databaseUrl: string, options: { topicPrefix?: string } = {}): DeviceSeeder {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  return {
    async tenant(id = `t-${randomBytes(4).toString('hex')}`) {
      await pool.query('INSERT INTO tenants (id, name) VALUES ($1, $2)', [id, `tenant ${id}`]);
      if (options.topicPrefix !== undefined) await createTopics(createTopicNames(options.topicPrefix).forTenant(id));
      return id;
    },
    async device(tenantId, options = {}) {
      const id = randomUUID();
      await pool.query('INSERT INTO devices (id, tenant_id, name, disabled) VALUES ($1, $2, $3, $4)', [
        id,
        tenantId,
        `device ${id.slice(0, 8)}`,
        options.disabled ?? false,
      ]);
      return id;
    },
    async key(deviceId, options = {}) {
      const { keyId, key } = generateApiKey();
      const storage = options.storage ?? 'digest';
      const [scheme, hash] =
        storage === 'argon2id'
          ? ['argon2id', await hasher.hash(key)]
          : ['hmac-sha256', createKeyDigest(storage === 'digest' ? TEST_KEY_DIGEST_SECRET : storage.digestSecret, null).digest(key)];
      await pool.query(
        'INSERT INTO device_keys (id, device_id, scheme, hash, not_after, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)',
        [keyId, deviceId, scheme, hash, options.notAfter ?? null, options.revoked ? new Date() : null],
      );
      return { keyId, key };
    },
    async psk(deviceId, psk = randomBytes(24).toString('base64url')) {
      await pool.query(
        'INSERT INTO device_psk (device_id, hash) VALUES ($1, $2) ON CONFLICT (device_id) DO UPDATE SET hash = $2, updated_at = now()',
        [deviceId, await hasher.hash(psk)],
      );
      return psk;
    },
    query: (sql, params = []) => pool.query(sql, params),
    close: () => pool.end(),
  };
}
