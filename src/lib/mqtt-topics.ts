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
