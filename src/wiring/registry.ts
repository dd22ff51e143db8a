import { createKeyDigest } from '../lib/key-digest.js';
import { createPasswordHasher } from '../lib/password-hasher.js';
import { createAdminTokenRepository } from '../modules/admin-tokens/admin-token-repository.js';
import { createAdminTokenService } from '../modules/admin-tokens/admin-token-service.js';
import { createAuditRepository } from '../modules/audit/audit-repository.js';
import { createAuditService } from '../modules/audit/audit-service.js';
import type { ChangeRecorder } from '../modules/changes/change-recorder.js';
import { createCredentialRepository } from '../modules/credentials/credential-repository.js';
import { createCredentialService } from '../modules/credentials/credential-service.js';
import { createDeviceRepository } from '../modules/devices/device-repository.js';
import { createDeviceImportService } from '../modules/devices/device-import-service.js';
import { createDeviceService } from '../modules/devices/device-service.js';
import { createTenantRepository } from '../modules/tenants/tenant-repository.js';
import { createTenantService } from '../modules/tenants/tenant-service.js';
import type { WiringContext } from './context.js';

/**
 * The admin side: tenants, devices, credentials, admin tokens and the audit
 * log, in Postgres. Every change that matters to authentication is recorded
 * on the change log by `changes`, in its own transaction; what the other
 * features do about it is written in composition.ts.
 */
export function wireRegistry(deps: WiringContext & { changes: ChangeRecorder; provisionTopics: (tenantId: string) => Promise<void> }) {
  const { config, infra, clock, changes } = deps;
  const pool = infra.postgres.pool;
  const audit = createAuditRepository();
  const tenants = createTenantRepository();
  const devices = createDeviceRepository();
  const credentials = createCredentialRepository();
  const keyDigest = createKeyDigest(config.credentials.keyDigestSecret, config.credentials.keyDigestSecretPrevious);
  return {
    tenants: createTenantService({ pool, tenants, audit, changes, provisionTopics: deps.provisionTopics, clock }),
    devices: createDeviceService({ pool, devices, tenants, audit, changes, clock }),
    imports: createDeviceImportService({ pool, devices, tenants, credentials, audit, keyDigest, clock }),
    credentials: createCredentialService({
      pool,
      devices,
      credentials,
      audit,
      hasher: createPasswordHasher(config.credentials.argon2),
      keyDigest,
      changes,
      clock,
    }),
    adminTokens: createAdminTokenService({ pool, tokens: createAdminTokenRepository(), tenants, audit, rootToken: config.admin.rootToken, clock }),
    audit: createAuditService({ pool, audit }),
  };
}
