import { Redis } from 'ioredis';
import { credentialChangeChannel, type CredentialChange } from '../../src/lib/credential-change.js';
import { TEST_REDIS_URL } from './env.js';

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
