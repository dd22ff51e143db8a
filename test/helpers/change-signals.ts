import { Redis } from 'ioredis';
import { credentialChangeChannel, type CredentialChange } from '../../src/lib/credential-change.js';
import { TEST_REDIS_URL } from './env.js';
import { waitFor } from './wait.js';

/** Subscribes to the credential change channel the way another replica would. */
export async function listenForChanges(keyPrefix: string) {
  const subscriber = new Redis(TEST_REDIS_URL);
  const received: CredentialChange[] = [];
  subscriber.on('message', (_channel: string, message: string) => received.push(JSON.parse(message) as CredentialChange));
  await subscriber.subscribe(credentialChangeChannel(keyPrefix));
  return {
    received,
    /** Resolves with the first change matching `predicate` (waiting up to 2 s). */
    async next(predicate: (change: CredentialChange) => boolean): Promise<CredentialChange> {
      for (let waited = 0; waited < 2000; waited += 20) {
        const found = received.find(predicate);
        if (found) return found;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`no matching change signal; received ${JSON.stringify(received)}`);
    },
    close: () => subscriber.quit(),
  };
}

/** Publishes a change signal the way the registry of another replica would. */
export async function publishChange(keyPrefix: string, change: Omit<CredentialChange, 'at'> & { at?: string }): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL);
  try {
    await redis.publish(credentialChangeChannel(keyPrefix), JSON.stringify({ at: new Date().toISOString(), ...change }));
  } finally {
    redis.disconnect();
  }
}

type MetricsSource = { inject(options: { method: 'GET'; url: string }): Promise<{ body: string }> };

/** How many change signals of a kind the app has acted on (credential_changes_applied_total). */
export async function changesApplied(app: MetricsSource, kind: string): Promise<number> {
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const match = new RegExp(`^credential_changes_applied_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(metrics);
  return Number(match?.[1] ?? 0);
}

/**
 * Runs `send` (which publishes one change of `kind`) and resolves once every
 * app has finished acting on it: caches dropped, kick made or skipped,
 * liveness updated. What a replica did not do by then, it will not do.
 */
export async function untilApplied(apps: readonly MetricsSource[], kind: string, send: () => Promise<unknown>, timeoutMs = 3000): Promise<void> {
  const before = await Promise.all(apps.map((app) => changesApplied(app, kind)));
  await send();
  await waitFor(async () => {
    const now = await Promise.all(apps.map((app) => changesApplied(app, kind)));
    return now.every((count, index) => count > (before[index] ?? 0));
  }, timeoutMs);
}
