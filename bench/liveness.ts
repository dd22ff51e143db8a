// Liveness costs measured directly against Redis in this process (no HTTP):
// the sweep with 100,000 tracked devices, what recordTelemetry adds to each
// ingested message, and the flush that writes the gathered telemetry.
import { Registry } from 'prom-client';
import { createRedis } from '../src/infra/redis.js';
import { createLivenessMetrics } from '../src/modules/liveness/liveness-metrics.js';
import { createLivenessService } from '../src/modules/liveness/liveness-service.js';
import { createLivenessStore } from '../src/modules/liveness/liveness-store.js';

const TRACKED = 100_000;
const DUE = 1000;
const THRESHOLD_MS = 120_000;
const silent = { warn: () => undefined, info: () => undefined, debug: () => undefined };

function stats(samplesMs: number[]) {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  const mean = sorted.reduce((sum, value) => sum + value, 0) / Math.max(1, sorted.length);
  return `mean ${mean.toFixed(3)} ms, p50 ${at(0.5).toFixed(3)} ms, p99 ${at(0.99).toFixed(3)} ms`;
}

async function inChunks<T>(items: T[], size: number, work: (item: T) => Promise<unknown>) {
  for (let start = 0; start < items.length; start += size) await Promise.all(items.slice(start, start + size).map(work));
}

export async function benchLiveness(redisUrl: string, keyPrefix: string): Promise<string[]> {
  const redis = createRedis({ keyPrefix, topology: { kind: 'single', url: redisUrl } }, silent);
  const store = createLivenessStore(redis.redis, keyPrefix);
  const lines: string[] = [];
  const base = Date.parse('2026-11-24T12:00:00.000Z');
  const ids = Array.from({ length: TRACKED }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
  const touch = (i: number, atMs: number) =>
    store.touch(
      { deviceId: ids[i] ?? '', tenantId: 'bench', firstAtMs: atMs, lastAtMs: atMs, thresholdMs: THRESHOLD_MS, slackMs: 1000 },
      { nowMs: atMs, leaseMs: 30_000 },
    );
  try {
    // Device i last seen at base + i ms: the first DUE devices fall due together.
    await inChunks(ids.map((_, i) => i), 2000, (i) => touch(i, base + i));
    const firstDeadline = base + THRESHOLD_MS + 1000;

    const idle: number[] = [];
    for (let round = 0; round < 500; round++) {
      const started = performance.now();
      await store.claim({ nowMs: firstDeadline - 1, limit: 1000, leaseMs: 30_000 });
      idle.push(performance.now() - started);
    }
    lines.push(`liveness sweep, ${TRACKED} tracked, none due: ${stats(idle)}`);

    const due: number[] = [];
    for (let round = 0; round < 30; round++) {
      const started = performance.now();
      const { expired } = await store.claim({ nowMs: firstDeadline + DUE - 1, limit: 1000, leaseMs: 30_000 });
      await store.ack(expired);
      due.push(performance.now() - started);
      if (expired.length !== DUE) throw new Error(`claimed ${expired.length}, expected ${DUE}`);
      // Back online for the next round (not timed).
      await inChunks(ids.slice(0, DUE).map((_, i) => i), 1000, (i) => touch(i, base + i));
    }
    lines.push(`liveness sweep, ${TRACKED} tracked, ${DUE} due (claim + ack in Redis; the Kafka produce comes on top): ${stats(due)}`);

    let now = base + 10_000;
    const liveness = createLivenessService({
      store,
      events: { produce: async () => undefined },
      pool: { query: () => Promise.reject(new Error('not used')) },
      statuses: { saveStatuses: async () => undefined },
      devices: { get: async () => null },
      clock: () => now,
      metrics: createLivenessMetrics(new Registry()),
      log: silent,
    });
    const record = (i: number) => liveness.recordTelemetry({ id: ids[i] ?? '', tenantId: 'bench', offlineThresholdS: THRESHOLD_MS / 1000 }, now);

    // What the ingest path pays: the message is noted in memory, and every
    // 1,000 devices a flush is sent (its round trip is not waited for).
    const noted: number[] = [];
    for (let round = 0; round < 20; round++) {
      now += 5000;
      const started = performance.now();
      for (let i = 0; i < 5000; i++) void record(i);
      noted.push(((performance.now() - started) * 1000) / 5000);
      await liveness.flush();
    }
    lines.push(`liveness on the ingest path, per message: ${stats(noted).replaceAll(' ms', ' µs')}`);

    // Until the flush of 1,000 devices (one script call) is done, by what their messages change.
    const flushOf = async (label: string, stepMs: number) => {
      const samples: number[] = [];
      for (let round = 0; round < 50; round++) {
        now += stepMs;
        const started = performance.now();
        let flushed = Promise.resolve();
        for (let i = 0; i < 1000; i++) flushed = record(i);
        await flushed;
        samples.push(performance.now() - started);
      }
      lines.push(`liveness update of 1,000 devices in one flush, ${label}: ${stats(samples)}`);
    };
    // 5 s between two flushes of the same devices: each deadline is rewritten;
    // 250 ms (devices sending several messages a second): within the slack, skipped.
    await flushOf('deadline written', 5000);
    await flushOf('write skipped (chatty devices)', 250);
  } finally {
    const keys = await redis.redis.keys(`${keyPrefix}*`);
    for (let start = 0; start < keys.length; start += 500) await redis.redis.del(...keys.slice(start, start + 500));
    await redis.close();
  }
  return lines;
}
