// Authentication benchmarks: seeding, and the 10,000-device reconnect storm.
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { generateApiKey } from '../src/lib/api-key.js';
import { createKeyDigest } from '../src/lib/key-digest.js';
import { createPasswordHasher, type Argon2Params } from '../src/lib/password-hasher.js';
import type { Server } from './support.js';
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
  /** Answers received in each half second of the storm: a freshly started process answers slower at first. */
  answeredPerHalfSecond: number[];
  /** CPU time the service process used during the storm. */
  serviceCpuMs: number;
  /** CPU time this (client) process used during the storm: it shares the machine's cores with the service. */
  clientCpuMs: number;
}

/** EMQX's HTTP authenticator: a pool of 8 connections, requests pipelined on each (8 of them here). */
export const STORM_SHAPE = { connections: 8, perConnection: 8 };

/**
 * Sends every request once, as EMQX's HTTP authenticator does (docs/emqx-contract.md
 * §A): STORM_SHAPE's keep-alive connections, each with up to `perConnection`
 * requests in flight, answered in order. Requests are written as raw
 * HTTP/1.1, so the client spends little of the CPU it shares with the service.
 */
export async function storm(server: Pick<Server, 'port' | 'cpuSeconds'>, requests: readonly StormRequest[]): Promise<StormResult> {
  const { connections, perConnection } = STORM_SHAPE;
  const latencies: number[] = [];
  const result: StormResult = { answers: new Array<string>(requests.length), totalMs: 0, maxMs: 0, p99Ms: 0, allow: 0, deny: 0, ignore: 0, other: 0, wrongAllows: 0, answeredPerHalfSecond: [], serviceCpuMs: 0, clientCpuMs: 0 };
  const head = `POST /emqx/authn HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${TEST_HOOK_TOKEN}\r\n`;
  const encode = (body: string) => `${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  let next = 0;

  let startedAt = 0;
  const record = (index: number, sentAt: number, answer: string) => {
    const now = performance.now();
    latencies.push(now - sentAt);
    const halfSecond = Math.floor((now - startedAt) / 500);
    result.answeredPerHalfSecond[halfSecond] = (result.answeredPerHalfSecond[halfSecond] ?? 0) + 1;
    result.answers[index] = answer;
    if (answer === 'allow' || answer === 'deny' || answer === 'ignore') result[answer]++;
    else result.other++;
    if (answer === 'allow' && !requests[index]!.correct) result.wrongAllows++;
  };

  const drive = () =>
    new Promise<void>((resolve, reject) => {
      const socket = net.connect(server.port, '127.0.0.1');
      socket.setNoDelay(true);
      const waiting: { index: number; sentAt: number }[] = [];
      let buffered: Buffer = Buffer.alloc(0);
      const fill = () => {
        let batch = '';
        while (waiting.length < perConnection && next < requests.length) {
          const index = next++;
          waiting.push({ index, sentAt: performance.now() });
          batch += encode(requests[index]!.body);
        }
        if (batch) socket.write(batch);
        else if (waiting.length === 0) socket.end();
      };
      socket.on('connect', fill);
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => {
        buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
        let answered = false;
        for (;;) {
          const response = parseResponse(buffered);
          if (!response) break;
          buffered = buffered.subarray(response.length);
          const sent = waiting.shift();
          if (!sent) return reject(new Error('an answer to no request'));
          record(sent.index, sent.sentAt, response.status === 200 ? (JSON.parse(response.body) as { result: string }).result : `http_${response.status}`);
          answered = true;
        }
        if (answered) fill();
      });
      socket.on('close', () => (waiting.length ? reject(new Error(`connection closed with ${waiting.length} requests unanswered`)) : resolve()));
    });

  const serviceCpuAtStart = server.cpuSeconds();
  const clientCpuAtStart = process.cpuUsage();
  startedAt = performance.now();
  await Promise.all(Array.from({ length: connections }, drive));
  result.answeredPerHalfSecond = Array.from(result.answeredPerHalfSecond, (count) => count ?? 0);
  result.totalMs = Math.round(performance.now() - startedAt);
  result.serviceCpuMs = (server.cpuSeconds() - serviceCpuAtStart) * 1000;
  const clientCpu = process.cpuUsage(clientCpuAtStart);
  result.clientCpuMs = (clientCpu.user + clientCpu.system) / 1000;
  latencies.sort((a, b) => a - b);
  result.maxMs = Math.round(latencies.at(-1) ?? 0);
  result.p99Ms = Math.round(latencies[Math.floor(latencies.length * 0.99)] ?? 0);
  return result;
}

/** One complete HTTP/1.1 response with a content-length at the start of `data`, or null while it is incomplete. */
function parseResponse(data: Buffer): { status: number; body: string; length: number } | null {
  const headEnd = data.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const head = data.toString('latin1', 0, headEnd);
  const contentLength = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (!contentLength) throw new Error(`an answer without content-length: ${head.split('\r\n')[0]}`);
  const length = headEnd + 4 + Number(contentLength[1]);
  if (data.length < length) return null;
  return { status: Number(head.slice(9, 12)), body: data.toString('utf8', headEnd + 4, length), length };
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
