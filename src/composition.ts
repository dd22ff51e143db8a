import { combineEventHandlers } from './lib/emqx-event.js';
import { wireChanges } from './wiring/changes.js';
import { wireCommandJobs } from './wiring/command-jobs.js';
import { wireCommands } from './wiring/commands.js';
import type { WiringContext } from './wiring/context.js';
import { wireDirectory } from './wiring/directory.js';
import { wireEmqxAuth } from './wiring/emqx-auth.js';
import { wireIngest } from './wiring/ingest.js';
import { wireLiveness } from './wiring/liveness.js';
import { wireRegistry } from './wiring/registry.js';
import { wireSessions } from './wiring/sessions.js';
import { wireTopics } from './wiring/topics.js';

/**
 * The product's map. Each feature is wired by its own function in `wiring/`,
 * which also registers its background work's start and stop with
 * `context.lifecycle`; what one feature does when another changes something
 * is written here.
 */
export function compose(context: WiringContext) {
  const directory = wireDirectory(context);

  const topics = wireTopics(context);
  const commands = wireCommands({ ...context, topics });
  const commandJobs = wireCommandJobs({ ...context, commands });
  const sessions = wireSessions({ ...context, directory });
  const auth = wireEmqxAuth({ ...context, directory, sessions: sessions.store, kicksQueued: () => changes.effectsQueued() });
  const liveness = wireLiveness({ ...context, directory, sessions: sessions.store });
  const ingest = wireIngest({
    ...context,
    directory,
    topics,
    // Liveness is telemetry-driven: a message Kafka acknowledged keeps its device online.
    onAccepted: (device, receivedAtMs) => void liveness.service.recordTelemetry(device, receivedAtMs),
  });

  // When the registry changes a device or its credentials (a key revoked or
  // rotated, a PSK set, replaced or deleted, the device changed, disabled or
  // deleted), the change is recorded in its transaction and:
  const changes = wireChanges({
    ...context,
    // 1. in the same transaction, a deleted device's commands end (queued ones
    //    canceled, those EMQX held dropped) and are deleted with it;
    async inTransaction(db, recorded) {
      const deleted = recorded.filter((change) => change.kind === 'device_deleted').map((change) => change.device_id);
      if (deleted.length === 0) return async () => undefined;
      const afterCommit = await commands.service.purgeDevices(db, deleted);
      return async () => afterCommit();
    },
    // 2. every replica, within a second, reads the device again on its next
    //    use and drops the verifications it holds (each also carries the
    //    device's credential version, so one that a change voided is never
    //    used, even before this);
    apply(change) {
      directory.invalidate(change.device_id);
      auth.forgetInMemory(change.device_id);
    },
    reset() {
      directory.clear();
      auth.forgetAllInMemory();
    },
    effects: {
      // 3. one replica ends the live session, when the credential it may have
      //    used, or the device itself, may no longer connect — after every
      //    replica has read the change, and retried until EMQX confirms;
      async kick(effect) {
        const onlyKeyId = effect.kind === 'key_expired' && effect.keyId !== null ? { onlyKeyId: effect.keyId } : {};
        await auth.kick({ deviceId: effect.deviceId, reason: effect.kind, ...onlyKeyId });
      },
      // 4. one replica cleans Redis: the verifications the change names, the
      //    liveness deadline moved to a new offline threshold; for a deleted
      //    device everything kept under its id (session, liveness, failed
      //    attempts), so a device re-created with the id starts clean.
      async clean_up(effect) {
        if (effect.kind === 'key_expired') return;
        await auth.deleteStored(effect.deviceId, effect.kind === 'key_revoked' ? (effect.keyId ?? undefined) : undefined);
        directory.invalidate(effect.deviceId);
        await liveness.service.applyChange({ kind: effect.kind, device_id: effect.deviceId });
        if (effect.kind === 'device_deleted') {
          await Promise.all([sessions.store.forget(effect.deviceId), auth.forgetFailures(effect.deviceId)]);
        }
      },
    },
  });

  const registry = wireRegistry({
    ...context,
    changes: changes.recorder,
    provisionTopics: async (tenantId) => {
      await topics.provisioner.ensureTenant(tenantId);
      // Command requests of a new tenant are consumed from its creation on, not from the next look at Kafka's topics.
      commands.tenantCreated();
    },
  });

  return {
    registry,
    statuses: liveness.statuses,
    commands: commands.service,
    commandJobs: commandJobs.service,
    authn: auth.authn,
    /** Readiness: a replica holding verified credentials answers them with Postgres or Redis down. */
    authWarm: auth.warm,
    authz: auth.authz,
    serviceIdentity: auth.serviceIdentity,
    unusableBodies: auth.unusableBodies,
    /** `/emqx/events`: handlers by event name, and where an event none can take is kept. */
    events: { handlers: combineEventHandlers(ingest.handlers, sessions.handlers, commands.handlers), unusable: ingest.unusable },
  };
}

export type Product = ReturnType<typeof compose>;
