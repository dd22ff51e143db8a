import { andThen } from '../../lib/and-then.js';
import { isDeviceId } from '../../lib/identifiers.js';
import { commandRepliesTopic, commandsTopic, telemetryTopic } from '../../lib/mqtt-topics.js';
import type { DeviceDirectory } from '../devices/device-directory.js';
import type { DeviceRecord } from '../devices/device-repository.js';
import type { AuthMetrics } from './auth-metrics.js';
import type { ServiceIdentity } from './service-identity.js';

export interface AuthzRequest {
  readonly clientid: string;
  readonly username: string;
  readonly topic: string;
  readonly action: string;
}

export type AuthzResult = 'allow' | 'deny' | 'ignore';

export interface AuthzService {
  /** Synchronous when the answer needs no lookup (the device is in memory, or the request is malformed). */
  authorize(request: AuthzRequest): AuthzResult | Promise<AuthzResult>;
}

/**
 * EMQX's "may this client use this topic?" (docs/emqx-contract.md §B). Topics are
 * compared as exact strings: a filter such as `devices/+/commands` or `#` is
 * not the device's own topic and is denied. The device itself comes from the
 * in-memory directory; Postgres is asked only on a directory miss, and an
 * unreachable Postgres then means `ignore` (EMQX's no_match = deny applies).
 */
export function createAuthzService(deps: {
  devices: Pick<DeviceDirectory, 'get' | 'peek'>;
  metrics: Pick<AuthMetrics, 'authz'>;
  /** COMMAND_REPLIES=enabled: a device may also publish on devices/{own id}/command-replies. */
  commandReplies?: boolean;
  /** The telemetry subscriber's identity, answered by its own ACL. */
  serviceIdentity?: ServiceIdentity | null;
}): AuthzService {
  const { devices, metrics } = deps;
  const commandReplies = deps.commandReplies ?? false;

  const usable = (device: DeviceRecord | null): AuthzResult => (device && !device.disabled ? 'allow' : 'deny');

  function decide({ clientid, username, topic, action }: AuthzRequest): AuthzResult | Promise<AuthzResult> {
    if (deps.serviceIdentity?.claims(username)) return deps.serviceIdentity.authorize(topic, action);
    if (clientid !== username || !isDeviceId(clientid)) return 'deny';
    const own =
      action === 'publish'
        ? topic === telemetryTopic(clientid) || (commandReplies && topic === commandRepliesTopic(clientid))
        : action === 'subscribe' && topic === commandsTopic(clientid);
    if (!own) return 'deny';
    const device = devices.peek(clientid);
    if (device !== undefined) return usable(device);
    return devices.get(clientid).then(usable, () => 'ignore' as const);
  }

  return {
    authorize(request) {
      const action = request.action === 'publish' || request.action === 'subscribe' ? request.action : 'other';
      const counted = (result: AuthzResult) => {
        metrics.authz.inc({ action, result });
        return result;
      };
      return andThen(decide(request), counted);
    },
  };
}
