import { buildApp, listen } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { migrateDatabase } from './infra/migrations.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }

  const app = await buildApp(config);
  if (config.postgres.migrateOnStart) {
    await migrateDatabase(config.postgres.url, app.log);
  }

  let shuttingDown = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (shuttingDown) return;
    shuttingDown = true;
    app.log.info({ signal }, 'shutting down: draining in-flight requests');
    const deadline = setTimeout(() => {
      app.log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown did not finish in time');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    // Keep-alive connections (EMQX keeps a pool open) go idle only when their
    // in-flight request ends; close each as soon as it does, or close() would
    // wait for the client to hang up.
    const closeIdle = setInterval(() => app.server.closeIdleConnections(), 50);
    closeIdle.unref();
    // close() stops accepting, waits for in-flight requests, then runs the
    // onClose hooks that flush Kafka and close the pools.
    app.close().then(
      () => {
        app.log.info('shutdown complete');
        process.exit(0);
      },
      (error: unknown) => {
        app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);

  // The metrics port too, with METRICS_PORT; app.close() closes both.
  await listen(app, config);
}

main().catch((error: unknown) => {
  console.error('device-link-mqtt failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
