import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';

export interface ReadinessProbe {
  readonly name: string;
  check(timeoutMs: number): Promise<void>;
  /** Why a failed check failed, as a word an operator acts on (a wrong password, an untrusted certificate); never a secret. */
  cause?(error: unknown): string;
  /**
   * Whether the replica is unready while it is down (the default). A dependency
   * that authentication and authorization do without (Kafka) is reported in
   * the answer but leaves the replica ready: an unready replica leaves the
   * Service's endpoints, and every replica would leave at once.
   */
  required?: boolean;
}

export interface HealthRoutesOptions {
  probes: readonly ReadinessProbe[];
  probeTimeoutMs?: number;
  /** True once the process is shutting down: the replica is unready so that its endpoints go, whatever its dependencies. */
  draining?: () => boolean;
  /**
   * True while the replica holds verified credentials in memory: it answers
   * those devices' CONNECTs with Postgres or Redis down (the failure table),
   * so a required dependency being down leaves it ready. Were it unready,
   * every replica would leave the Service's endpoints at once, and the
   * devices they could still let in would be refused too.
   */
  warm?: () => boolean;
}

const readySchema = z
  .object({
    status: z
      .enum(['ready', 'not_ready', 'draining'])
      .describe(
        '`not_ready` when Postgres or Redis does not answer and the replica holds no verified credentials in memory (with some, it answers those devices and stays `ready`); `draining` once the process is shutting down. Kafka being down leaves it `ready`.',
      ),
    down: z.array(z.string()).describe('The dependencies that did not answer: `postgres`, `redis`, `kafka` (Kafka listed too, although it does not make the replica unready)'),
    checks: z.record(z.string(), z.enum(['up', 'down'])).describe('Each dependency and whether it answered'),
    causes: z
      .record(z.string(), z.string())
      .describe(
        'For a dependency that is down and can tell why, the cause: for Kafka `authentication_failed`, `tls_untrusted_certificate`, `tls_handshake_failed`, `connection_closed`, `unreachable`, `timeout` or `unavailable`. Never a secret.',
      ),
  })
  .meta({ id: 'Readiness' });

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, options) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const probeTimeoutMs = options.probeTimeoutMs ?? 1500;

  routes.get(
    '/healthz',
    {
      schema: {
        tags: ['operations'],
        operationId: 'getHealth',
        summary: 'The process is up',
        description: 'Answers without asking any dependency: for a liveness probe.',
        response: { 200: z.object({ status: z.literal('ok') }) },
        answers: { 200: 'Up' },
      },
      logLevel: 'warn',
    },
    async () => ({ status: 'ok' as const }),
  );

  routes.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        operationId: 'getReadiness',
        summary: 'The replica can answer EMQX: Postgres and Redis answer (or it holds verified credentials), and it is not shutting down',
        description: `Each dependency is checked with a ${probeTimeoutMs / 1000} s timeout; the answer names what is down. Kafka is checked and reported too, but a Kafka outage leaves the replica ready: authentication, authorization and the admin API (but for creating a tenant) do without it, and telemetry answers 503 for EMQX to retry. Once the process has been told to stop, the answer is 503 \`draining\`. The cause is logged once by the service, never answered here.`,
        response: { 200: readySchema, 503: readySchema },
        answers: {
          200: {
            description: 'Postgres and Redis answer, or one is down and the replica answers from the verified credentials it holds (Kafka may be down: see `checks`)',
            examples: {
              ready: { value: { status: 'ready', down: [], checks: { postgres: 'up', redis: 'up', kafka: 'up' }, causes: {} } },
              kafkaDown: { value: { status: 'ready', down: ['kafka'], checks: { postgres: 'up', redis: 'up', kafka: 'down' }, causes: { kafka: 'authentication_failed' } } },
            },
          },
          503: {
            description: 'Postgres or Redis does not answer and the replica holds no verified credentials, or the process is shutting down',
            examples: {
              postgresDown: { value: { status: 'not_ready', down: ['postgres'], checks: { postgres: 'down', redis: 'up', kafka: 'up' }, causes: {} } },
              draining: { value: { status: 'draining', down: [], checks: { postgres: 'up', redis: 'up', kafka: 'up' }, causes: {} } },
            },
          },
        },
      },
      logLevel: 'warn',
    },
    async (_request, reply) => {
      const results = await Promise.all(
        options.probes.map(async (probe) => {
          try {
            await probe.check(probeTimeoutMs);
            return { name: probe.name, required: probe.required ?? true, status: 'up' as const, cause: undefined };
          } catch (error) {
            // The details are logged once by the dependency's state tracker;
            // the public answer names what is down and, where known, why.
            return { name: probe.name, required: probe.required ?? true, status: 'down' as const, cause: probe.cause?.(error) };
          }
        }),
      );
      const down = results.filter(({ status }) => status === 'down').map(({ name }) => name);
      const ready = results.every(({ status, required }) => status === 'up' || !required) || options.warm?.() === true;
      const status = options.draining?.() ? 'draining' : ready ? 'ready' : 'not_ready';
      return reply.status(status === 'ready' ? 200 : 503).send({
        status,
        down,
        checks: Object.fromEntries(results.map(({ name, status }) => [name, status])),
        causes: Object.fromEntries(results.flatMap(({ name, cause }) => (cause === undefined ? [] : [[name, cause]]))),
      });
    },
  );
};

/** `GET /metrics`: on the HTTP port, or on a listener of its own with METRICS_PORT. */
export const metricsRoutes: FastifyPluginAsync<{ metrics: Registry }> = async (app, { metrics }) => {
  app.get(
    '/metrics',
    {
      logLevel: 'warn',
      schema: {
        tags: ['operations'],
        operationId: 'getMetrics',
        summary: 'Prometheus metrics',
        description: 'Served on this port unless `METRICS_PORT` is set; then only on that port, by a listener of its own, and this port answers 404.',
        answers: { 200: { description: 'The Prometheus text exposition format', type: 'text/plain', body: z.string() } },
      },
    },
    async (_request, reply) => {
      const text = await metrics.metrics();
      return reply.type(metrics.contentType).send(text);
    },
  );
};
