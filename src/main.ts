import closeWithGrace from 'close-with-grace';
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

  // SIGTERM or SIGINT — or an uncaught error — closes the app gracefully:
  // first the drain pause (SHUTDOWN_DRAIN_DELAY_MS), then within
  // SHUTDOWN_TIMEOUT_MS (exit 1 past both, or on a second signal); exit 0
  // once closed after a signal.
  closeWithGrace(
    {
      delay: config.shutdownDrainDelayMs + config.shutdownTimeoutMs,
      logger: { error: (message: unknown) => app.log.error({ detail: message }, 'shutdown') },
      onTimeout: (delayMs) => app.log.error({ timeoutMs: delayMs }, 'shutdown did not finish in time'),
    },
    async ({ signal, err }) => {
      if (err) app.log.error({ err }, 'closing after an uncaught error');
      else if (config.shutdownDrainDelayMs > 0) {
        // The pre-stop pause: /readyz answers 503 so that the endpoints drop
        // this replica, while it keeps answering whatever still arrives and
        // closes each keep-alive connection after its next answer, so that
        // clients reconnect elsewhere instead of meeting a closed listener.
        app.drain.begin();
        app.log.info({ signal, drainDelayMs: config.shutdownDrainDelayMs }, 'shutting down: unready, moving connections away');
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainDelayMs));
      }
      if (!err) app.log.info({ signal }, 'shutting down: draining in-flight requests');
      app.drain.begin();
      // Keep-alive connections (EMQX keeps a pool open) go idle only when their
      // in-flight request ends; close each as soon as it does, or close() would
      // wait for the client to hang up.
      const closeIdle = setInterval(() => app.server.closeIdleConnections(), 50);
      closeIdle.unref();
      // close() stops accepting, waits for in-flight requests, then runs the
      // onClose hooks that flush Kafka and close the pools.
      await app.close();
      app.log.info('shutdown complete');
    },
  );

  // The metrics port too, with METRICS_PORT; app.close() closes both.
  await listen(app, config);
}

main().catch((error: unknown) => {
  console.error('device-link-mqtt failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
