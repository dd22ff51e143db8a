/** The only MQTT topics a device may use: publish its telemetry, subscribe to its commands. */
export function telemetryTopic(deviceId: string): string {
  return `devices/${deviceId}/telemetry`;
}

export function commandsTopic(deviceId: string): string {
  return `devices/${deviceId}/commands`;
}
