/** Device ids are UUIDs in canonical lowercase form: that exact string is the MQTT client id. */
export const DEVICE_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Tenant ids appear in Kafka topic names, so they are limited to what topic names allow. */
export const TENANT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function isDeviceId(value: string): boolean {
  return DEVICE_ID_PATTERN.test(value);
}
