/**
 * The change signal for authentication caches.
 *
 * Channel: `<REDIS_KEY_PREFIX>credentials:changed` (Redis pub/sub).
 * Message: JSON `CredentialChange`. The registry publishes it only after the
 * change is committed to Postgres, so a replica that reloads on receipt sees
 * the new state. Every replica that caches verified credentials or device
 * state subscribes and drops what the message names:
 *  - `key_id` set: entries verified with that key;
 *  - `key_id` absent: every entry of the device (all keys, PSK, device state).
 * Pub/sub is fire-and-forget: a replica that was disconnected may miss a
 * message, which is why cache entries also carry a TTL.
 */
export type CredentialChangeKind =
  | 'key_revoked'
  | 'keys_rotated'
  | 'psk_set'
  | 'psk_deleted'
  | 'device_disabled'
  | 'device_enabled'
  | 'device_updated'
  | 'device_deleted';

export interface CredentialChange {
  readonly kind: CredentialChangeKind;
  readonly device_id: string;
  readonly tenant_id: string;
  readonly key_id?: string;
  /** ISO-8601 time of the change. */
  readonly at: string;
}

export function credentialChangeChannel(keyPrefix: string): string {
  return `${keyPrefix}credentials:changed`;
}

/**
 * Changes after which a live MQTT session must be kicked: the credential it may
 * have connected with no longer exists, or the device may no longer connect.
 */
export function requiresKick(change: CredentialChange): boolean {
  return (
    change.kind === 'key_revoked' ||
    change.kind === 'psk_deleted' ||
    change.kind === 'device_disabled' ||
    change.kind === 'device_deleted'
  );
}
