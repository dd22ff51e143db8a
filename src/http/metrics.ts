import type { FastifyInstance, FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify';
import { Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { DependencyState } from '../lib/dependency-state.js';

/**
 * A registry per app instance (not prom-client's global one), so that several
 * apps in one process — tests, benchmarks — do not share counters.
 */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

interface Series {
  readonly labels: Readonly<Record<string, string>>;
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

type MetricValue = { labels: Record<string, string | number>; value: number; metricName?: string };

/** A metric prom-client's registry can export: what its own metrics give it at scrape time. */
function exported(name: string, help: string, type: 'counter' | 'histogram', values: () => MetricValue[], reset: () => void) {
  const get = async () => ({ name, help, type, aggregator: 'sum', values: values() });
  return { name, help, type, aggregator: 'sum', get, reset } as unknown as Metric;
}

/**
 * Request count and latency by route pattern, method and status. Each route
 * gets an onResponse hook that knows its pattern and holds its series (a
 * direct route records its own, through the recorder returned); the registry
 * turns the series into `devicelink_http_requests_total` and
 * `devicelink_http_request_duration_seconds` when scraped. Measured against prom-client's
 * own Counter and Histogram updated per request (which hash the label set on
 * every update; request.routeOptions builds an object on every read): paired
 * median +17.6 % req/s on /emqx/authz, +8.4 % on cached /emqx/authn, +9.7 % on
 * telemetry (npm run bench, BENCH_COMPARE; measured when these were Fastify
 * routes).
 */
export function registerRequestMetrics(app: FastifyInstance, registry: Registry): (route: string) => RequestRecorder {
  const all: Series[] = [];
  const reset = () => {
    for (const series of all) {
      series.counts.fill(0);
      series.sum = 0;
      series.count = 0;
    }
  };
  registry.registerMetric(
    exported('devicelink_http_requests_total', 'HTTP requests answered, by route pattern, method and status code', 'counter', () =>
      all.map((series) => ({ labels: { ...series.labels }, value: series.count })),
    reset),
  );
  registry.registerMetric(
    exported(
      'devicelink_http_request_duration_seconds',
      'Time from request received to response sent, by route pattern, method and status code',
      'histogram',
      () =>
        all.flatMap((series) => {
          let cumulative = 0;
          const buckets = series.counts.map((count, index) => {
            cumulative += count;
            const le = index < LATENCY_BUCKETS.length ? (LATENCY_BUCKETS[index] as number) : '+Inf';
            return { labels: { le, ...series.labels }, value: cumulative, metricName: 'devicelink_http_request_duration_seconds_bucket' };
          });
          return [
            ...buckets,
            { labels: { ...series.labels }, value: series.sum, metricName: 'devicelink_http_request_duration_seconds_sum' },
            { labels: { ...series.labels }, value: series.count, metricName: 'devicelink_http_request_duration_seconds_count' },
          ];
        }),
      reset,
    ),
  );

  // The pattern, not the URL: keeps label cardinality bounded.
  const recorderFor = (route: string) => {
    const byMethod = new Map<string, Map<number, Series>>();
    return (method: string, status: number, seconds: number) => {
      let byStatus = byMethod.get(method);
      if (!byStatus) byMethod.set(method, (byStatus = new Map()));
      let series = byStatus.get(status);
      if (!series) {
        series = { labels: { route, method, status: String(status) }, counts: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0), sum: 0, count: 0 };
        byStatus.set(status, series);
        all.push(series);
      }
      let bucket = 0;
      while (bucket < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[bucket] as number)) bucket++;
      series.counts[bucket] = (series.counts[bucket] as number) + 1;
      series.sum += seconds;
      series.count++;
    };
  };

  const measured = (record: RequestRecorder) => (request: FastifyRequest, reply: FastifyReply) =>
    record(request.method, reply.statusCode, reply.elapsedTime / 1000);
  app.addHook('onRoute', (route) => {
    // A direct route records its own requests, Fastify's included (src/http/direct-routes.ts).
    if (route.config?.servedDirectly) return;
    const record = measured(recorderFor(route.url));
    const hook: onResponseHookHandler = (request, reply, done) => {
      record(request, reply);
      done();
    };
    route.onResponse = route.onResponse ? [hook, ...[route.onResponse].flat()] : hook;
  });
  // Requests no route matched (the not-found handler has no route hooks).
  const unmatched = measured(recorderFor('unmatched'));
  app.addHook('onResponse', (request, reply, done) => {
    if (request.is404) unmatched(request, reply);
    done();
  });
  return recorderFor;
}

/** Counts one answered request of a route pattern, and its time from received to answered. */
export type RequestRecorder = (method: string, status: number, seconds: number) => void;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route is served by Node's http module directly, which records its metrics (src/http/direct-routes.ts). */
    servedDirectly?: boolean;
  }
}

/**
 * `devicelink_dependency_up{dependency}`: 1 while the replica's last call to
 * the dependency (a request's, or the readiness probe's ping) succeeded, 0
 * after one failed. Kafka's state is here and in /readyz, but does not make
 * the replica unready.
 */
export function registerDependencyMetrics(registry: Registry, states: readonly DependencyState[]) {
  new Gauge({
    name: 'devicelink_dependency_up',
    help: "1 when the replica's last call to the dependency succeeded, 0 when it failed",
    labelNames: ['dependency'] as const,
    registers: [registry],
    collect() {
      for (const state of states) this.set({ dependency: state.name }, state.isUp() ? 1 : 0);
    },
  });
}
