/**
 * The only MQTT topics a device may use: publish its telemetry, subscribe to
 * its commands, and (with COMMAND_REPLIES=enabled) publish command replies.
 */
export function telemetryTopic(deviceId: string): string {
  return `devices/${deviceId}/telemetry`;
}

export function commandsTopic(deviceId: string): string {
  return `devices/${deviceId}/commands`;
}

export function commandRepliesTopic(deviceId: string): string {
  return `devices/${deviceId}/command-replies`;
}

/** The filter every device's telemetry matches. */
export const TELEMETRY_FILTER = 'devices/+/telemetry';

/** A shared subscription to every device's telemetry: the broker gives each message to one member of the group. */
export function sharedTelemetryFilter(group: string): string {
  return `$share/${group}/${TELEMETRY_FILTER}`;
}

/** The device segment of a telemetry topic, or null when the topic is not `devices/{segment}/telemetry`. */
export function telemetryTopicDevice(topic: string): string | null {
  const match = /^devices\/([^/+#]+)\/telemetry$/.exec(topic);
  return match ? (match[1] as string) : null;
}
