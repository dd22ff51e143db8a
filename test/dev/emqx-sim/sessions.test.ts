import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createSessionRegistry, type Session } from '../../../dev/emqx-sim/sessions.js';

/** A programmatic session with only what routing reads. */
function session(clientid: string): Session {
  return {
    clientid,
    username: clientid,
    peerhost: '127.0.0.1',
    peername: '127.0.0.1:1',
    sockname: '127.0.0.1:1883',
    protoVer: 4,
    keepalive: 60,
    cleanStart: true,
    superuser: false,
    clientAttrs: {},
    acl: [],
    link: { kind: 'programmatic', acks: true, queue: [] },
    connected: true,
    connectedAt: 0,
    disconnectedAt: 0,
    subscriptions: new Map(),
    dropNext: [],
  };
}

describe('EMQX simulation: routing a topic to sessions', () => {
  const sessions = createSessionRegistry();
  after(() => sessions.close());
  const reached = (topic: string) => sessions.subscribers(topic).map(({ session: { clientid }, qos }) => `${clientid}@${qos}`);

  it('reaches the sessions whose filters match, exact, wildcard and shared alike, with the best QoS of each', () => {
    const device = session('device');
    const monitor = session('monitor');
    const ingest = session('ingest');
    for (const each of [device, monitor, ingest]) sessions.live.set(each.clientid, each);
    sessions.subscribe(device, 'devices/a/commands', 1);
    sessions.subscribe(monitor, 'devices/+/commands', 0);
    sessions.subscribe(monitor, '#', 1);
    sessions.subscribe(ingest, '$share/g/devices/+/telemetry', 1);

    assert.deepEqual(reached('devices/a/commands').sort(), ['device@1', 'monitor@1']);
    assert.deepEqual(reached('devices/b/commands'), ['monitor@1']);
    assert.deepEqual(reached('devices/a/telemetry').sort(), ['ingest@1', 'monitor@1']);
    // Wildcards at the first level do not reach topics starting with "$".
    assert.deepEqual(reached('$SYS/brokers'), []);
  });

  it('no longer reaches a filter unsubscribed, nor a session replaced by one without it', () => {
    const device = session('device');
    sessions.live.set('device', device);
    sessions.subscribe(device, 'devices/c/commands', 1);
    assert.deepEqual(reached('devices/c/commands'), ['device@1', 'monitor@1']);

    device.subscriptions.delete('devices/c/commands');
    assert.deepEqual(reached('devices/c/commands'), ['monitor@1']);

    sessions.subscribe(device, 'devices/c/commands', 1);
    sessions.live.set('device', session('device'));
    assert.deepEqual(reached('devices/c/commands'), ['monitor@1']);
  });

  it('reaches sessions kept for clients that are away, after the connected ones', () => {
    const away = session('away');
    sessions.offline.set('away', away);
    sessions.subscribe(away, 'devices/d/commands', 1);
    const present = session('present');
    sessions.live.set('present', present);
    sessions.subscribe(present, 'devices/d/commands', 0);
    const found = reached('devices/d/commands');
    assert.deepEqual(found.slice(0, 2).sort(), ['monitor@1', 'present@0']);
    assert.equal(found[2], 'away@1');
    assert.equal(found.length, 3);
  });
});
