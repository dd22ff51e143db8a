import sensible from '@fastify/sensible';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { registerErrorHandler } from './http/error-handler.js';
import { createMetricsRegistry, registerRequestMetrics } from './http/metrics.js';
import { zodSerializerCompiler, zodValidatorCompiler } from './http/zod-type-provider.js';
import { closeInfra, createInfra, type Infra } from './infra/index.js';
import { createServices, type Services } from './composition.js';
import { requireAdmin } from './http/admin-auth.js';
import { requireHookToken } from './http/hook-token.js';
import { systemClock, type Clock } from './lib/clock.js';
import { authRoutes } from './modules/emqx-auth/auth-routes.js';
import { eventsRoutes } from './modules/emqx-events/events-routes.js';
import { adminTokenRoutes } from './modules/admin-tokens/admin-token-routes.js';
import { auditRoutes } from './modules/audit/audit-routes.js';
import { credentialRoutes } from './modules/credentials/credential-routes.js';
import { deviceRoutes } from './modules/devices/device-routes.js';
import { healthRoutes } from './modules/health/health-routes.js';
import { deviceStatusRoutes } from './modules/liveness/device-status-routes.js';
import { tenantRoutes } from './modules/tenants/tenant-routes.js';

export interface AppDeps {
  /** Clients to use instead of creating them from config; the caller then closes them. */
  infra?: Infra;
  clock?: Clock;
  /** Where log lines go (tests capture them); stdout by default. */
  logStream?: { write(line: string): void };
}

declare module 'fastify' {
  interface FastifyInstance {
    infra: Infra;
    /** Every registered `METHOD /path` (HEAD twins omitted); openapi.yaml must match it. */
    routeList: string[];
    services: Services;
  }
}

/** Paths whose values never reach a log line. */
const LOG_REDACT = [
  'req.headers.authorization',
  'headers.authorization',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'psk',
  '*.psk',
];

/** Builds the app with every route registered; it is not listening. */
export async function buildApp(config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: LOG_REDACT, censor: '[redacted]' },
      ...(deps.logStream ? { stream: deps.logStream } : {}),
    },
    // EMQX sends one event per request; 10 MiB leaves room for the oversized
    // payloads that must reach the dead-letter topic rather than bounce.
    bodyLimit: 12 * 1024 * 1024,
    requestIdHeader: 'x-request-id',
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  app.decorate('routeList', [] as string[]);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      if (method !== 'HEAD') app.routeList.push(`${method} ${route.url}`);
    }
  });
  app.setValidatorCompiler(zodValidatorCompiler);
  app.setSerializerCompiler(zodSerializerCompiler);
  registerErrorHandler(app);
  await app.register(sensible);

  const ownsInfra = !deps.infra;
  const infra = deps.infra ?? createInfra(config, app.log as FastifyBaseLogger);
  app.decorate('infra', infra);

  const clock = deps.clock ?? systemClock;
  const metrics = createMetricsRegistry();
  registerRequestMetrics(app, metrics);
  const services = createServices({ config, infra, clock, metrics, log: app.log });
  app.decorate('services', services);

  await app.register(healthRoutes, {
    metrics,
    probes: [
      { name: 'postgres', check: (ms) => infra.postgres.ping(ms) },
      { name: 'redis', check: (ms) => infra.redis.ping(ms) },
      { name: 'kafka', check: (ms) => infra.kafka.ping(ms) },
    ],
  });

  // Admin API: one encapsulated context, so the admin token applies here only.
  await app.register(async (admin) => {
    const { registry } = services;
    requireAdmin(admin, registry.adminTokens.authenticate);
    await admin.register(tenantRoutes, { tenants: registry.tenants });
    await admin.register(deviceRoutes, { devices: registry.devices });
    await admin.register(deviceStatusRoutes, { statuses: services.deviceStatuses });
    await admin.register(credentialRoutes, { credentials: registry.credentials });
    await admin.register(adminTokenRoutes, { adminTokens: registry.adminTokens });
    await admin.register(auditRoutes, { pool: infra.postgres.pool, audit: registry.audit });
  });

  // EMQX-facing routes: one encapsulated context, so the hook token applies here only.
  await app.register(async (emqx) => {
    // One child logger per level for the whole context rather than one per
    // request: EMQX sends tens of thousands of requests a second, carries no
    // request id to correlate, and these routes log only when something fails.
    const loggers = new Map<string, FastifyBaseLogger>();
    emqx.setChildLoggerFactory((logger, _bindings, options) => {
      const level = options.level ?? logger.level;
      let child = loggers.get(level);
      if (!child) loggers.set(level, (child = logger.child({ context: 'emqx' }, options)));
      return child;
    });
    requireHookToken(emqx, config.emqx.hookToken);
    await emqx.register(authRoutes, { authn: services.authn, authz: services.authz });
    await emqx.register(eventsRoutes, { handlers: services.eventHandlers, metrics });
  });

  // Every replica sweeps; preClose stops it before the clients it uses close.
  app.addHook('onReady', async () => services.livenessSweeper.start());
  app.addHook('preClose', async () => services.livenessSweeper.stop());

  // In the background: a Kafka outage at start-up must not keep authentication down.
  app.addHook('onReady', async () => services.topicReconciliation.start());
  // preClose: before the clients close, whatever order onClose hooks run in.
  app.addHook('preClose', () => services.topicReconciliation.stop());
  if (ownsInfra) app.addHook('onClose', () => closeInfra(infra));
  // onClose hooks run last-added first: this one runs before the clients close,
  // as pending key-usage writes still need Postgres.
  app.addHook('onClose', () => services.close());
  return app;
}
