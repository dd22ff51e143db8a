import mqtt, { type MqttClient } from 'mqtt';
import type { PrivateMosquitto } from './private-mosquitto.js';

/** The variables that turn on ingest by subscription against a private Mosquitto. */
export function subscriptionEnv(broker: PrivateMosquitto, more: Record<string, string> = {}): Record<string, string> {
  return {
    INGEST_MQTT_URL: broker.url,
    INGEST_MQTT_USERNAME: broker.service.username,
    INGEST_MQTT_PASSWORD: broker.service.password,
    INGEST_MQTT_SHARE_GROUP: broker.service.group,
    // One client: Mosquitto spreads a shared subscription round-robin (it has no hash strategy), so only one member keeps a device's order.
    INGEST_MQTT_CLIENTS: '1',
    ...more,
  };
}

/** A device connected to the broker as itself (username = client id = its id), MQTT 5. */
export async function connectDevice(broker: PrivateMosquitto, deviceId: string, password: string, username = deviceId): Promise<MqttClient> {
  await broker.user(username, password);
  // The broker reloads its password file on SIGHUP: a connect right after may come first.
  for (let attempt = 0; ; attempt++) {
    try {
      return await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: deviceId, username, password, reconnectPeriod: 0, clean: true });
    } catch (error) {
      if (attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Publishes at QoS 1 and resolves with the broker's PUBACK reason code. */
export async function publishQos1(client: MqttClient, topic: string, payload: string, userProperties?: Record<string, string>): Promise<number> {
  try {
    const packet = await client.publishAsync(topic, payload, { qos: 1, ...(userProperties ? { properties: { userProperties } } : {}) });
    return (packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
  } catch (error) {
    // mqtt.js rejects a PUBACK with a failure reason code, carrying the code.
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw error;
  }
}
