import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { createMqttSubscription, type MqttSubscription } from '../../src/infra/mqtt-subscription.js';
import { sharedTelemetryFilter } from '../../src/lib/mqtt-topics.js';
import { silentLog } from '../helpers/context.js';
import { createPrivateMosquitto, type PrivateMosquitto } from '../helpers/private-mosquitto.js';
import { connectDevice } from '../helpers/subscription.js';

const PASSWORD = 'device-password-0123456789';
const RECEIVE_MAXIMUM = 20;
const DEVICES = 5;
const PER_DEVICE = 400;

describe('the telemetry subscription client (a real Mosquitto 2)', () => {
  let broker: PrivateMosquitto;
  let subscription: MqttSubscription | undefined;
  const devices: MqttClient[] = [];

  before(async () => {
    broker = await createPrivateMosquitto();
    await broker.start();
  });
  after(async () => {
    await Promise.allSettled(devices.map((device) => device.endAsync(true)));
    await subscription?.stop(true);
    await broker?.destroy();
  });

  it('reads no further once the broker exceeds its Receive Maximum, until acknowledgements make room, and loses none', async () => {
    let unacknowledged = 0;
    let most = 0;
    const received = new Set<string>();
    let connected!: () => void;
    const subscribed = new Promise<void>((resolve) => (connected = resolve));
    subscription = createMqttSubscription(
      {
        url: broker.url,
        username: broker.service.username,
        password: broker.service.password,
        clientId: 'receive-maximum',
        clients: 1,
        filter: sharedTelemetryFilter(broker.service.group),
        receiveMaximum: RECEIVE_MAXIMUM,
        sessionExpiryS: 60,
        log: silentLog,
      },
      {
        connected: () => connected(),
        message(publish, ack) {
          unacknowledged++;
          most = Math.max(most, unacknowledged);
          received.add(publish.payload.toString());
          // As the service acknowledges: once the record is in Kafka, some milliseconds later.
          setTimeout(() => {
            unacknowledged--;
            ack();
          }, 20);
        },
      },
    );
    await subscription.start(10_000);
    await subscribed;

    // Mosquitto acknowledges each publish to the device at once and queues it for the subscriber.
    for (let index = 0; index < DEVICES; index++) devices.push(await connectDevice(broker, `device-${index}`, PASSWORD));
    await Promise.all(
      devices.map(async (device, index) => {
        for (let n = 0; n < PER_DEVICE; n++) await device.publishAsync(`devices/device-${index}/telemetry`, `${index}-${n}`, { qos: 1 });
      }),
    );
    const deadline = Date.now() + 30_000;
    while (received.size < DEVICES * PER_DEVICE && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));

    assert.equal(received.size, DEVICES * PER_DEVICE, 'every message reaches the subscriber');
    // The one message over the maximum is what stops the reading.
    assert.ok(most <= RECEIVE_MAXIMUM + 1, `at most ${RECEIVE_MAXIMUM + 1} unacknowledged at once, saw ${most}`);
    assert.ok(most >= RECEIVE_MAXIMUM / 2, `several in flight at once (${most}): acknowledgements are not awaited one by one`);
  });
});
