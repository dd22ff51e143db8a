// Authentication benchmarks: seeding, and the 10,000-device reconnect storm.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Redis } from 'ioredis';
import pg from 'pg';
import { generateApiKey } from '../src/lib/api-key.js';
import { createKeyDigest } from '../src/lib/key-digest.js';
import { createPasswordHasher, type Argon2Params } from '../src/lib/password-hasher.js';
import { TEST_HOOK_TOKEN, TEST_KEY_DIGEST_SECRET } from '../test/helpers/env.js';

export interface BenchDevice {
  readonly id: string;
  readonly key: string;
}

/** The service's default argon2 settings (config.ts): what each PSK verification costs. */
export const DEFAULT_ARGON2: Argon2Params = { memoryKib: 19 * 1024, timeCost: 2, parallelism: 1 };
export const STORM_PSK = 'bench-storm-pre-shared-key-0123456789';

/**
 * Inserts a tenant and `count` devices, each with an API key stored as the
 * registry stores it (a digest under the bench's KEY_DIGEST_SECRET) and the
 * PSK STORM_PSK hashed once with DEFAULT_ARGON2 (the same hash row for every
 * device: one default-cost hash, verified at full cost).
 */
export async function seedDevices(databaseUrl: string, count: number): Promise<{ tenantId: string; devices: BenchDevice[] }> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  const keyDigest = createKeyDigest(TEST_KEY_DIGEST_SECRET, null);
  const pskHash = await createPasswordHasher(DEFAULT_ARGON2).hash(STORM_PSK);
  const tenantId = 'bench';
  try {
    await pool.query("INSERT INTO tenants (id, name) VALUES ($1, 'bench') ON CONFLICT DO NOTHING", [tenantId]);
    const devices: BenchDevice[] = [];
    for (let start = 0; start < count; start += 500) {
      const batch = Array.from({ length: Math.min(500, count - start) }, () => {
        const { keyId, key } = generateApiKey();
        return { id: randomUUID(), keyId, key, digest: keyDigest.digest(key) };
      });
      const ids = batch.map((d) => d.id);
      await pool.query(
        "INSERT INTO devices (id, tenant_id, name) SELECT id, $2, 'bench' FROM unnest($1::uuid[]) AS id",
        [ids, tenantId],
      );
      await pool.query(
        "INSERT INTO device_keys (id, device_id, scheme, hash) SELECT k, d, 'hmac-sha256', h FROM unnest($1::text[], $2::uuid[], $3::text[]) AS t(k, d, h)",
        [batch.map((d) => d.keyId), ids, batch.map((d) => d.digest)],
      );
      await pool.query('INSERT INTO device_psk (device_id, hash) SELECT id, $2 FROM unnest($1::uuid[]) AS id', [ids, pskHash]);
      devices.push(...batch.map(({ id, key }) => ({ id, key })));
    }
    return { tenantId, devices };
  } finally {
    await pool.end();
  }
}

export function authnBody(device: BenchDevice, password = device.key, index = 0): string {
  return JSON.stringify({
    clientid: device.id,
    username: device.id,
    password,
    peerhost: `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}`,
  });
}

export interface StormRequest {
  readonly body: string;
  /** Whether this request carries the right secret (an allow for a wrong one is a failure). */
  readonly correct: boolean;
}

export interface StormResult {
  /** The answer to each request, in request order. */
  answers: string[];
  totalMs: number;
  maxMs: number;
  p99Ms: number;
  allow: number;
  deny: number;
  ignore: number;
  other: number;
  wrongAllows: number;
}

/** Sends every request once, `concurrency` at a time over keep-alive connections. */
export async function storm(port: number, requests: readonly StormRequest[], concurrency = 64): Promise<StormResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  const result: StormResult = { answers: new Array<string>(requests.length), totalMs: 0, maxMs: 0, p99Ms: 0, allow: 0, deny: 0, ignore: 0, other: 0, wrongAllows: 0 };
  let next = 0;
  const send = (body: string) =>
    new Promise<string>((resolve, reject) => {
      const request = http.request(
        {
          host: '127.0.0.1',
          port,
          path: '/emqx/authn',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_HOOK_TOKEN}`, 'content-length': Buffer.byteLength(body) },
        },
        (response) => {
          let data = '';
          response.on('data', (chunk: Buffer) => (data += chunk.toString()));
          response.on('end', () => resolve(response.statusCode === 200 ? (JSON.parse(data) as { result: string }).result : `http_${response.statusCode}`));
        },
      );
      request.on('error', reject);
      request.end(body);
    });
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let index = next++; index < requests.length; index = next++) {
        const { body, correct } = requests[index]!;
        const sentAt = performance.now();
        const answer = await send(body);
        latencies.push(performance.now() - sentAt);
        result.answers[index] = answer;
        if (answer === 'allow' || answer === 'deny' || answer === 'ignore') result[answer]++;
        else result.other++;
        if (answer === 'allow' && !correct) result.wrongAllows++;
      }
    }),
  );
  result.totalMs = Math.round(performance.now() - startedAt);
  latencies.sort((a, b) => a - b);
  result.maxMs = Math.round(latencies.at(-1) ?? 0);
  result.p99Ms = Math.round(latencies[Math.floor(latencies.length * 0.99)] ?? 0);
  agent.destroy();
  return result;
}

export async function deleteKeys(redisUrl: string, patterns: string[]): Promise<void> {
  const redis = new Redis(redisUrl);
  try {
    for (const pattern of patterns) {
      let cursor = '0';
      do {
        const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = nextCursor;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
}
