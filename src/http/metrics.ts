import type { FastifyInstance, FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * A registry per app instance (not prom-client's global one), so that several
 * apps in one process — tests, benchmarks — do not share counters.
 */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

type Recorder = (request: FastifyRequest, reply: FastifyReply) => void;

/**
 * Request count and latency by route pattern, method and status. Each route
 * gets its own onResponse hook that knows its pattern and keeps its label
 * children bound, so the per-request work is two lookups, an increment and an
 * observation (request.routeOptions builds an object on every read, and the
 * EMQX routes answer tens of thousands of requests a second).
 */
export function registerRequestMetrics(app: FastifyInstance, registry: Registry) {
  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by route pattern, method and status code',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request received to response sent, by route pattern, method and status code',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });

  // The pattern, not the URL: keeps label cardinality bounded.
  const recorderFor = (route: string): Recorder => {
    const bound = new Map<string, Map<number, { count: ReturnType<typeof requests.labels>; latency: ReturnType<typeof duration.labels> }>>();
    return (request, reply) => {
      const { method } = request;
      const status = reply.statusCode;
      let byStatus = bound.get(method);
      if (!byStatus) bound.set(method, (byStatus = new Map()));
      let children = byStatus.get(status);
      if (!children) {
        const labels = { route, method, status: String(status) };
        children = { count: requests.labels(labels), latency: duration.labels(labels) };
        byStatus.set(status, children);
      }
      children.count.inc();
      children.latency.observe(reply.elapsedTime / 1000);
    };
  };

  app.addHook('onRoute', (route) => {
    const record = recorderFor(route.url);
    const hook: onResponseHookHandler = (request, reply, done) => {
      record(request, reply);
      done();
    };
    route.onResponse = route.onResponse ? [hook, ...[route.onResponse].flat()] : hook;
  });
  // Requests no route matched (the not-found handler has no route hooks).
  const unmatched = recorderFor('unmatched');
  app.addHook('onResponse', (request, reply, done) => {
    if (request.is404) unmatched(request, reply);
    done();
  });
}
