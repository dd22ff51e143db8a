import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { createMqttSubscription, type ConnectionEvents, type MqttSubscription } from '../../src/infra/mqtt-subscription.js';
import { sharedTelemetryFilter } from '../../src/lib/mqtt-topics.js';
import { silentLog } from '../helpers/context.js';
import { createPrivateMosquitto, type PrivateMosquitto } from '../helpers/private-mosquitto.js';
import { connectDevice } from '../helpers/subscription.js';

const PASSWORD = 'device-password-0123456789';
const RECEIVE_MAXIMUM = 20;
const DEVICES = 5;
const PER_DEVICE = 400;

/** A message as the second test's subscriber saw it. */
interface Received {
  payload: string;
  dup: boolean;
}

describe('the telemetry subscription client (a real Mosquitto 2)', () => {
  let broker: PrivateMosquitto;
  const subscriptions: MqttSubscription[] = [];
  const devices: MqttClient[] = [];

  /** A client of the service identity in its share group, stopped after the tests. */
  const subscribe = (clientId: string, receiveMaximum: number, events: ConnectionEvents) => {
    const subscription = createMqttSubscription(
      {
        url: broker.url,
        username: broker.service.username,
        password: broker.service.password,
        clientId,
        clients: 1,
        filter: sharedTelemetryFilter(broker.service.group),
        receiveMaximum,
        sessionExpiryS: 60,
        log: silentLog,
      },
      events,
    );
    subscriptions.push(subscription);
    return subscription;
  };

  before(async () => {
    broker = await createPrivateMosquitto();
    await broker.start();
  });
  after(async () => {
    await Promise.allSettled(devices.map((device) => device.endAsync(true)));
    await Promise.allSettled(subscriptions.map((subscription) => subscription.stop(true)));
    await broker?.destroy();
  });

  it('reads no further once the broker exceeds its Receive Maximum, until acknowledgements make room, and loses none', async () => {
    let unacknowledged = 0;
    let most = 0;
    const received = new Set<string>();
    let connected!: () => void;
    const subscribed = new Promise<void>((resolve) => (connected = resolve));
    const subscription = subscribe('receive-maximum', RECEIVE_MAXIMUM, {
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
    });
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

  it('acknowledges exactly what it is told to: on the resumed session the broker sends again only the rest', async () => {
    const SENT = 300;
    const KEPT = 10;
    /** A subscriber that records what it gets and acknowledges what `acknowledge` says, several in one turn as the ingest does. */
    const recording = (received: Received[], acknowledge: (payload: string) => boolean): ConnectionEvents => ({
      connected: () => undefined,
      message(publish, ack) {
        const payload = publish.payload.toString();
        received.push({ payload, dup: publish.dup });
        if (acknowledge(payload)) queueMicrotask(ack);
      },
    });

    // Alone in the share group: the broker would hand a member left from the test before its part of the messages.
    await Promise.all(subscriptions.splice(0).map((subscription) => subscription.stop(true)));
    const first: Received[] = [];
    const one = subscribe('acknowledgements', 100, recording(first, (payload) => Number(payload.split('-')[1]) < SENT - KEPT));
    await one.start(10_000);
    const device = await connectDevice(broker, 'device-acks', PASSWORD);
    devices.push(device);
    for (let n = 0; n < SENT; n++) await device.publishAsync('devices/device-acks/telemetry', `acks-${n}`, { qos: 1 });
    const deadline = Date.now() + 15_000;
    while (first.length < SENT && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(first.length, SENT, 'every message reaches the subscriber');
    // The session stays with the broker: what was not acknowledged is sent again on the next connection.
    await one.stop(false);

    const again: Received[] = [];
    await subscribe('acknowledgements', 100, recording(again, () => true)).start(10_000);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    assert.deepEqual(
      again.map((message) => message.payload),
      Array.from({ length: KEPT }, (_, index) => `acks-${SENT - KEPT + index}`),
      'only the messages left unacknowledged come again, in order',
    );
    assert.ok(again.every((message) => message.dup), 'as redeliveries');
  });
});
