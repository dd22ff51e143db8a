import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { createSessionStore } from '../../../src/modules/sessions/session-store.js';
import { useTestRedis } from '../../helpers/redis.js';

describe('the connect claim of the reject policy', () => {
  const test = useTestRedis();
  const store = () => createSessionStore({ redis: test.redis, keyPrefix: test.prefix });
  const key = { kind: 'key', keyId: 'key-1' } as const;

  it('gives one claim per device to the first of the CONNECTs asking at once, the others busy', async () => {
    const sessions = store();
    const [first, second] = [randomUUID(), randomUUID()];
    const claims = await Promise.all([
      sessions.claimConnecting(first, 2000, key),
      sessions.claimConnecting(first, 2000, { kind: 'psk' }),
      sessions.claimConnecting(second, 2000, { kind: 'psk' }),
    ]);
    assert.deepEqual(claims, [
      { taken: true, connectedAt: null },
      { taken: false },
      { taken: true, connectedAt: null },
    ]);
    assert.deepEqual(await sessions.claimConnecting(first, 2000, key), { taken: false }, 'still held');
    await sessions.releaseConnecting(first);
    assert.deepEqual(await sessions.claimConnecting(first, 2000, key), { taken: true, connectedAt: null }, 'released');
  });

  it('answers with the open connection, and hands the claimed credential to the connect event', async () => {
    const sessions = store();
    const deviceId = randomUUID();
    assert.equal(await sessions.recordConnected(deviceId, { connectedAt: 1_000, peer: '10.0.0.1:1', protoVer: '5' }), true);
    assert.deepEqual(await sessions.claimConnecting(deviceId, 2000, key), { taken: true, connectedAt: 1_000 });
    assert.equal(await sessions.recordConnected(deviceId, { connectedAt: 2_000, peer: '10.0.0.1:2', protoVer: '5' }), true);
    assert.deepEqual((await sessions.get(deviceId))?.credential, key);
  });

  it('lets a claim lapse after its TTL', async () => {
    const sessions = store();
    const deviceId = randomUUID();
    assert.equal((await sessions.claimConnecting(deviceId, 50, key)).taken, true);
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.equal((await sessions.claimConnecting(deviceId, 2000, key)).taken, true);
  });
});
