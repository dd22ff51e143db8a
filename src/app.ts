import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import sensible from '@fastify/sensible';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerFactory } from 'fastify';
import type { Registry } from 'prom-client';
import { compose } from './composition.js';
import type { Config } from './config.js';
import { requireAdmin } from './http/admin-auth.js';
import { registerErrorHandler } from './http/error-handler.js';
import { answerRequestId, generateRequestId, registerClientRequestId } from './http/request-id.js';
import { createDirectRoutes, type DirectRoutes } from './http/direct-routes.js';
import { BAD_HOOK_TOKEN, hookTokenContext, hookTokenCheck } from './http/hook-token.js';
import { registerConnectionDrain, type ConnectionDrain } from './http/connection-drain.js';
import { createMetricsRegistry, registerDependencyMetrics, registerRequestMetrics } from './http/metrics.js';
import { registerOpenApi } from './http/openapi.js';
import { zodSerializerCompiler, zodValidatorCompiler } from './http/zod-type-provider.js';
import { closeInfra, createInfra, type Infra } from './infra/index.js';
import { kafkaFailureCause } from './infra/kafka.js';
import { systemClock, type Clock } from './lib/clock.js';
import { adminTokenRoutes } from './modules/admin-tokens/admin-token-routes.js';
import { auditRoutes } from './modules/audit/audit-routes.js';
import { commandJobRoutes } from './modules/commands/command-job-routes.js';
import { commandRoutes } from './modules/commands/command-routes.js';
import { credentialRoutes } from './modules/credentials/credential-routes.js';
import { deviceRoutes } from './modules/devices/device-routes.js';
import { docsRoutes } from './modules/docs/docs-routes.js';
import { authRoutes } from './modules/emqx-auth/auth-routes.js';
import { eventsRoutes } from './modules/emqx-events/events-routes.js';
import { healthRoutes, metricsRoutes } from './modules/health/health-routes.js';
import { deviceStatusRoutes } from './modules/liveness/device-status-routes.js';
import { tenantRoutes } from './modules/tenants/tenant-routes.js';
import { createLifecycle } from './wiring/lifecycle.js';

export interface AppDeps {
  /** Clients to use instead of creating them from config; the caller then closes them. */
  infra?: Infra;
  clock?: Clock;
  /** Where log lines go (tests capture them); stdout by default. */
  logStream?: { write(line: string): void };
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every registered `METHOD /path` (HEAD twins omitted); openapi.yaml must describe each. */
    routeList: string[];
    /** The listener of /metrics with METRICS_PORT, opened by listen() and closed with the app; null without it. */
    metricsServer: FastifyInstance | null;
    /** Closes keep-alive connections at their bounds, and all of them once draining (src/http/connection-drain.ts). */
    drain: ConnectionDrain;
  }
}

const ADMIN_BODY_LIMIT_BYTES = 1024 * 1024;

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
  // Served ahead of Fastify from the time they are registered until the app starts closing.
  let direct: DirectRoutes | null = null;
  const app = Fastify({
    serverFactory: serverServing(() => direct),
    logger: {
      level: config.logLevel,
      redact: { paths: LOG_REDACT, censor: '[redacted]' },
      ...(deps.logStream ? { stream: deps.logStream } : {}),
    },
    // The admin API's limit (a command's params are at most 64 KiB). The EMQX
    // routes set their own: small for authn and authz, and /emqx/events
    // reads any body, dead-lettering what no allowed event can be.
    bodyLimit: ADMIN_BODY_LIMIT_BYTES,
    // Never taken from the request: a client's x-request-id is logged and
    // audited as the client's own (src/http/request-id.ts).
    requestIdHeader: false,
    genReqId: generateRequestId,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  app.decorate('routeList', [] as string[]);
  const drain = registerConnectionDrain(app.server, config.connections);
  app.decorate('drain', drain);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      if (method !== 'HEAD') app.routeList.push(`${method} ${route.url}`);
    }
  });
  app.setValidatorCompiler(zodValidatorCompiler);
  app.setSerializerCompiler(zodSerializerCompiler);
  registerErrorHandler(app);
  registerClientRequestId(app);
  await app.register(sensible);
  // Before any route: the document is made of the routes registered after it.
  await registerOpenApi(app);

  const infra = deps.infra ?? createInfra(config, app.log as FastifyBaseLogger);
  const metrics = createMetricsRegistry();
  const recorderFor = registerRequestMetrics(app, metrics);
  registerDependencyMetrics(metrics, [infra.postgres.state, infra.redis.state, infra.kafka.state]);
  const lifecycle = createLifecycle(app.log);
  const product = compose({ config, infra, clock: deps.clock ?? systemClock, metrics, log: app.log, lifecycle });

  const metricsServer = config.metrics ? await buildMetricsServer(metrics, app.log) : null;
  app.decorate('metricsServer', metricsServer);
  if (metricsServer) app.addHook('onClose', () => metricsServer.close());
  else await app.register(metricsRoutes, { metrics });
  await app.register(healthRoutes, {
    probes: [
      { name: 'postgres', check: (ms) => infra.postgres.ping(ms) },
      { name: 'redis', check: (ms) => infra.redis.ping(ms) },
      // Authentication, authorization and the admin API (but for creating a
      // tenant) do without Kafka, and telemetry answers 503 for EMQX to retry:
      // a Kafka outage must not take every replica out of the Service at once.
      { name: 'kafka', check: (ms) => infra.kafka.ping(ms), cause: kafkaFailureCause, required: false },
    ],
    draining: () => drain.draining,
    warm: product.authWarm,
  });
  await app.register(docsRoutes);

  // Admin API: one encapsulated context, so the admin token applies here only.
  await app.register(async (admin) => {
    const { registry } = product;
    // First, so that a refused request names its id too.
    answerRequestId(admin);
    requireAdmin(admin, registry.adminTokens.authenticate);
    await admin.register(tenantRoutes, { tenants: registry.tenants });
    await admin.register(deviceRoutes, { devices: registry.devices, imports: registry.imports });
    await admin.register(deviceStatusRoutes, { statuses: product.statuses });
    await admin.register(credentialRoutes, { credentials: registry.credentials });
    await admin.register(commandRoutes, { commands: product.commands });
    await admin.register(commandJobRoutes, { jobs: product.commandJobs });
    await admin.register(adminTokenRoutes, { adminTokens: registry.adminTokens });
    await admin.register(auditRoutes, { audit: registry.audit });
  });

  // EMQX-facing routes, asked on every CONNECT, topic check and event: served
  // ahead of Fastify, each checking the hook token (src/http/direct-routes.ts).
  const emqxDirect = createDirectRoutes({
    authorized: hookTokenCheck(config.emqx.hookTokens),
    unauthorized: BAD_HOOK_TOKEN,
    log: app.log.child({ context: 'emqx' }),
    recorderFor,
  });
  await app.register(async (emqx) => {
    hookTokenContext(emqx);
    await emqx.register(authRoutes, {
      direct: emqxDirect,
      authn: product.authn,
      authz: product.authz,
      unusableBodies: product.unusableBodies,
      commandReplies: config.commands.replies,
      serviceIdentity: product.serviceIdentity,
    });
    await emqx.register(eventsRoutes, { ...product.events, direct: emqxDirect, maxEventBytes: config.ingest.maxEventBytes, metrics });
  });
  direct = emqxDirect;
  app.addHook('preClose', () => {
    // Fastify answers what arrives from now on: 503, as for every route.
    direct = null;
  });

  // The features' background work (src/wiring/lifecycle.ts): started once
  // the app is ready, stopped as it starts closing, and what is still pending
  // written after the last request, before the clients close.
  app.addHook('onReady', () => lifecycle.run('onReady'));
  app.addHook('preClose', () => lifecycle.run('preClose'));
  app.addHook('onClose', async () => {
    try {
      await lifecycle.run('onClose');
    } finally {
      if (!deps.infra) await closeInfra(infra);
    }
  });
  return app;
}

/**
 * Node's HTTP server with the timeouts Fastify gives its own (the app sets
 * no other server option), and the direct routes answered before Fastify
 * sees the request.
 */
function serverServing(direct: () => DirectRoutes | null): FastifyServerFactory {
  return (handler, options) => {
    const server = createServer((request: IncomingMessage, response: ServerResponse) => {
      if (!direct()?.serve(request, response)) handler(request, response);
    });
    const { keepAliveTimeout, requestTimeout, connectionTimeout } = options;
    if (typeof keepAliveTimeout === 'number') server.keepAliveTimeout = keepAliveTimeout;
    if (typeof requestTimeout === 'number') server.requestTimeout = requestTimeout;
    if (typeof connectionTimeout === 'number') server.setTimeout(connectionTimeout);
    return server;
  };
}

/**
 * The listener of /metrics when METRICS_PORT is set, serving nothing else, so
 * that the port EMQX and admins reach need not expose the service's internals
 * and the metrics port can stay on an internal network.
 */
async function buildMetricsServer(metrics: Registry, log: FastifyBaseLogger): Promise<FastifyInstance> {
  const server = Fastify({
    loggerInstance: log.child({ listener: 'metrics' }),
    genReqId: generateRequestId,
    // A scrape cut short by the shutdown costs nothing: the next one comes from another process.
    forceCloseConnections: true,
  });
  registerErrorHandler(server);
  await server.register(metricsRoutes, { metrics });
  return server;
}

/**
 * Opens the app's ports: the metrics listener (with METRICS_PORT), then the
 * HTTP port. Metrics first, so that a port that cannot be opened stops the
 * start-up before EMQX can reach the service.
 */
export async function listen(app: FastifyInstance, config: Config): Promise<void> {
  if (app.metricsServer && config.metrics) await app.metricsServer.listen({ host: config.metrics.host, port: config.metrics.port });
  await app.listen({ host: config.http.host, port: config.http.port });
}
