/**
 * Device ids are lowercase canonical UUIDs: the form Postgres returns, and the
 * form that appears in topic names, so one device has exactly one spelling.
 */
const DEVICE_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isDeviceId(value: string): boolean {
  return value.length === 36 && DEVICE_ID_PATTERN.test(value);
}
