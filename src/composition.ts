import { setTimeout as sleep } from 'node:timers/promises';
import { Counter } from 'prom-client';
import { createCredentialChangeBus } from './infra/credential-changes.js';
import { requiresKick, type CredentialChange } from './lib/credential-change.js';
import { wireCommands } from './wiring/commands.js';
import type { WiringContext } from './wiring/context.js';
import { wireDirectory } from './wiring/directory.js';
import { wireEmqxAuth } from './wiring/emqx-auth.js';
import { wireIngest } from './wiring/ingest.js';
import { wireLiveness } from './wiring/liveness.js';
import { wireRegistry } from './wiring/registry.js';
import { wireSessions } from './wiring/sessions.js';
import { wireTopics } from './wiring/topics.js';

/** Start-up waits at most this long for the change subscription; Redis being down must not keep the service down. */
const CHANGE_SUBSCRIPTION_WAIT_MS = 2000;

/**
 * The product's map. Each feature is wired by its own function in `wiring/`;
 * what one feature does when another changes something is written here.
 */
export function compose(context: WiringContext) {
  const { infra, log } = context;
  const changes = createCredentialChangeBus(infra.redis, log);
  const directory = wireDirectory(context);

  const topics = wireTopics(context);
  const commands = wireCommands({ ...context, topics });
  const registry = wireRegistry({
    ...context,
    changes,
    provisionTopics: async (tenantId) => {
      await topics.provisioner.ensureTenant(tenantId);
      // Command requests of a new tenant are consumed from its creation on, not from the next look at Kafka's topics.
      commands.tenantCreated();
    },
  });
  const sessions = wireSessions({ ...context, directory });
  const auth = wireEmqxAuth({ ...context, directory, sessions: sessions.store });
  const liveness = wireLiveness({ ...context, directory, sessions: sessions.store });
  const ingest = wireIngest({
    ...context,
    directory,
    topics,
    // Liveness is telemetry-driven: a message Kafka acknowledged keeps its device online.
    onAccepted: (device, receivedAtMs) => void liveness.service.recordTelemetry(device, receivedAtMs),
  });

  const applied = new Counter({
    name: 'credential_changes_applied_total',
    help: 'Registry change signals this replica has acted on (caches dropped, session kicked if needed, liveness updated), by kind',
    labelNames: ['kind'] as const,
    registers: [context.metrics],
  });
  const attempt = (change: CredentialChange, what: string, work: () => Promise<unknown>) =>
    work().catch((error: unknown) =>
      log.warn({ device_id: change.device_id, kind: change.kind, err: error instanceof Error ? error.message : String(error) }, `credential change: ${what} failed`),
    );

  // After the registry commits a change to a device or its credentials (a key
  // revoked or rotated, a PSK set or deleted, the device changed, disabled or
  // deleted), every replica hears of it and, in this order:
  const unsubscribe = changes.subscribe(async (change) => {
    // 1. reads the device from Postgres again on its next use;
    directory.invalidate(change.device_id);
    // 2. drops the verifications the change names — before the kick, so a
    //    kicked device that reconnects at once meets the new state;
    await attempt(change, 'dropping cached credentials', () => auth.forget(change));
    // 3. kicks the live session when the credential it may have used, or the
    //    device itself, may no longer connect (one replica calls EMQX);
    if (requiresKick(change)) await attempt(change, 'kick', () => auth.kick(change));
    // 4. moves the liveness deadline to a new offline threshold, or forgets a deleted device;
    await attempt(change, 'liveness', () => liveness.service.applyChange(change));
    // 5. ends the commands a deleted device still had: queued ones canceled, those EMQX held dropped
    //    (every replica tries; a command moves once).
    if (change.kind === 'device_deleted') await attempt(change, 'commands', () => commands.service.abandonDevice(change.device_id));
    applied.inc({ kind: change.kind });
  });
  const resubscribed = new Counter({
    name: 'credential_changes_resubscribed_total',
    help: 'Times the change subscription was lost and active again, after which this replica dropped what it held in memory',
    registers: [context.metrics],
  });
  // Change signals sent while this replica's subscription was down are lost:
  // it drops what it holds in memory (devices and verifications) and reads
  // them again. Redis itself lost nothing the other replicas did not delete.
  const stopResyncing = changes.onResubscribed(() => {
    directory.clear();
    auth.forgetAll();
    resubscribed.inc();
  });

  return {
    registry,
    statuses: liveness.statuses,
    commands: commands.service,
    authn: auth.authn,
    authz: auth.authz,
    /** `/emqx/events`: handlers by event name, and where an event none can take is kept. */
    events: { handlers: { ...ingest.handlers, ...sessions.handlers, ...commands.handlers }, unusable: ingest.unusable },

    /** Once the app is ready: background work that every replica runs. */
    async start() {
      await Promise.race([changes.ready().catch(() => undefined), sleep(CHANGE_SUBSCRIPTION_WAIT_MS, undefined, { ref: false })]);
      liveness.sweeper.start();
      auth.keyExpiry.start();
      // In the background: a Kafka outage at start-up must not keep authentication down.
      topics.reconciliation.start();
      commands.start();
    },
    /** Before the clients close: stops the background work and waits for what is under way. */
    async stop() {
      await Promise.all([liveness.sweeper.stop(), auth.keyExpiry.stop(), topics.reconciliation.stop(), commands.stop()]);
    },
    /** After the last request: writes what is still pending (key usage, telemetry's liveness). */
    async close() {
      unsubscribe();
      stopResyncing();
      await Promise.all([auth.close(), liveness.service.flush()]);
    },
  };
}

export type Product = ReturnType<typeof compose>;
