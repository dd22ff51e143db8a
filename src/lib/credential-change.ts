/**
 * A committed change to a device or its credentials, as the change log
 * (`credential_changes`, written in the change's own transaction) records it.
 * Every replica reads the log and drops what it holds in memory about the
 * device; what must happen once (the live session ended, Redis state cleaned)
 * is queued with it and retried until done.
 */
export type CredentialChangeKind =
  | 'key_revoked'
  | 'keys_rotated'
  | 'psk_set'
  | 'psk_replaced'
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

/**
 * Changes after which a live MQTT session must end: the credential it may have
 * connected with no longer admits it, or the device may no longer connect. A
 * rotation is not among them: the old keys' sessions end when their grace does.
 */
export function endsSessions(kind: CredentialChangeKind): boolean {
  return kind === 'key_revoked' || kind === 'psk_replaced' || kind === 'psk_deleted' || kind === 'device_disabled' || kind === 'device_deleted';
}

/**
 * Changes that alter what may authenticate as the device, so that every
 * verification made before them is void: they give the device a new
 * credential version. A rename or a new offline threshold does not; a
 * deleted device has no version left to change.
 */
export function changesCredentials(kind: CredentialChangeKind): boolean {
  return kind !== 'device_updated' && kind !== 'device_deleted';
}

/** Redis pub/sub channel on which a committed change's log position is announced, so replicas read the log at once. */
export function credentialChangeChannel(keyPrefix: string): string {
  return `${keyPrefix}credentials:changed`;
}
