import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';

export interface ReadinessProbe {
  readonly name: string;
  check(timeoutMs: number): Promise<void>;
  /** Why a failed check failed, as a word an operator acts on (a wrong password, an untrusted certificate); never a secret. */
  cause?(error: unknown): string;
}

export interface HealthRoutesOptions {
  probes: readonly ReadinessProbe[];
  probeTimeoutMs?: number;
}

const readySchema = z.object({
  status: z.enum(['ready', 'not_ready']),
  down: z.array(z.string()),
  checks: z.record(z.string(), z.enum(['up', 'down'])),
  /** For a dependency that is down and can tell why: the cause. */
  causes: z.record(z.string(), z.string()),
});

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, options) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const probeTimeoutMs = options.probeTimeoutMs ?? 1500;

  routes.get(
    '/healthz',
    { schema: { response: { 200: z.object({ status: z.literal('ok') }) } }, logLevel: 'warn' },
    async () => ({ status: 'ok' as const }),
  );

  routes.get(
    '/readyz',
    { schema: { response: { 200: readySchema, 503: readySchema } }, logLevel: 'warn' },
    async (_request, reply) => {
      const results = await Promise.all(
        options.probes.map(async (probe) => {
          try {
            await probe.check(probeTimeoutMs);
            return { name: probe.name, status: 'up' as const, cause: undefined };
          } catch (error) {
            // The details are logged once by the dependency's state tracker;
            // the public answer names what is down and, where known, why.
            return { name: probe.name, status: 'down' as const, cause: probe.cause?.(error) };
          }
        }),
      );
      const down = results.filter(({ status }) => status === 'down').map(({ name }) => name);
      return reply.status(down.length === 0 ? 200 : 503).send({
        status: down.length === 0 ? 'ready' : 'not_ready',
        down,
        checks: Object.fromEntries(results.map(({ name, status }) => [name, status])),
        causes: Object.fromEntries(results.flatMap(({ name, cause }) => (cause === undefined ? [] : [[name, cause]]))),
      });
    },
  );
};

/** `GET /metrics`: on the HTTP port, or on a listener of its own with METRICS_PORT. */
export const metricsRoutes: FastifyPluginAsync<{ metrics: Registry }> = async (app, { metrics }) => {
  app.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    const text = await metrics.metrics();
    return reply.type(metrics.contentType).send(text);
  });
};
