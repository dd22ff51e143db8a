import { createHash, timingSafeEqual } from 'node:crypto';
import { sharedTelemetryFilter } from '../../lib/mqtt-topics.js';
import type { AclRule, AuthnResponse } from './auth-schemas.js';

/**
 * The service's own MQTT identity, the telemetry subscriber's
 * (INGEST_MQTT_USERNAME / INGEST_MQTT_PASSWORD): never a device (its username
 * cannot be a device id) and never a superuser. Its password is checked
 * against the configured one; its ACL allows the shared subscription to every
 * device's telemetry and nothing else.
 */
export interface ServiceIdentity {
  /** The username is the service identity's: the answer is this identity's, whatever the password. */
  claims(username: string): boolean;
  /** /emqx/authn for the identity: allow with its ACL for the right password, else deny. */
  authenticate(password: string): AuthnResponse;
  /** /emqx/authz for the identity: only subscribing to the shared telemetry filter. */
  authorize(topic: string, action: string): 'allow' | 'deny';
}

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

export function createServiceIdentity(options: { username: string; password: string; shareGroup: string }): ServiceIdentity {
  const expected = digest(options.password);
  const filter = sharedTelemetryFilter(options.shareGroup);
  const acl: AclRule[] = [
    { permission: 'allow', action: 'subscribe', topic: filter },
    { permission: 'deny', action: 'all', topic: '#' },
  ];
  return {
    claims: (username) => username === options.username,
    authenticate(password) {
      // Digests of equal length, compared in constant time: the comparison tells nothing of the password.
      return timingSafeEqual(digest(password), expected) ? { result: 'allow', is_superuser: false, acl } : { result: 'deny' };
    },
    authorize: (topic, action) => (action === 'subscribe' && topic === filter ? 'allow' : 'deny'),
  };
}
