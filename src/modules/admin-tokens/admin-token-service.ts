import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
import { withTransaction } from '../../infra/transaction.js';
import { generateKeyId, isKeyId } from '../../lib/api-key.js';
import type { Clock } from '../../lib/clock.js';
import { sha256 } from '../../lib/digest.js';
import { ForbiddenError, NotFoundError } from '../../lib/errors.js';
import { parseCursor, toPage, type Page } from '../../lib/pagination.js';
import type { Actor, Principal } from '../../lib/actor.js';
import type { AuditRepository } from '../audit/audit-repository.js';
import type { TenantRepository } from '../tenants/tenant-repository.js';
import type { AdminTokenRepository, AdminTokenRow } from './admin-token-repository.js';

/**
 * Admin tokens look like `dlm_at_<12-char id>_<43-char secret>`: the id finds
 * the row, the SHA-256 digest of the whole token is compared in constant time.
 * 256 random bits make a slow hash unnecessary.
 */
const TOKEN_PATTERN = /^dlm_at_([a-z2-7]{12})_[A-Za-z0-9_-]{43}$/;
export const ROOT_TOKEN_ID = 'root';

export interface AdminTokenView {
  id: string;
  label: string | null;
  tenant_id: string | null;
  created_at: string;
  revoked_at: string | null;
}

function toView(row: AdminTokenRow): AdminTokenView {
  return {
    id: row.id,
    label: row.label,
    tenant_id: row.tenant_id,
    created_at: row.created_at.toISOString(),
    revoked_at: row.revoked_at?.toISOString() ?? null,
  };
}

export interface AdminTokenServiceDeps {
  pool: Pool;
  tokens: AdminTokenRepository;
  tenants: Pick<TenantRepository, 'findById'>;
  audit: AuditRepository;
  rootToken: string;
  clock: Clock;
}

function requireGlobal(actor: Actor, what: string) {
  if (actor.tenantId !== null) throw new ForbiddenError(`${what} needs a global admin token`);
}

export function createAdminTokenService(deps: AdminTokenServiceDeps) {
  const { pool, tokens, audit, clock } = deps;
  const rootDigest = sha256(deps.rootToken);

  return {
    /** The principal for a presented bearer token, or null. Never throws for a bad token. */
    async authenticate(presented: string): Promise<Principal | null> {
      if (timingSafeEqual(sha256(presented), rootDigest)) return { tokenId: ROOT_TOKEN_ID, tenantId: null };
      const id = TOKEN_PATTERN.exec(presented)?.[1];
      if (!id) return null;
      const row = await tokens.findById(pool, id);
      // The digest comparison runs whether or not the row exists.
      const matches = timingSafeEqual(sha256(presented), row?.digest ?? sha256(`absent:${presented}`));
      if (!row || !matches || row.revoked_at !== null) return null;
      return { tokenId: row.id, tenantId: row.tenant_id };
    },

    async create(actor: Actor, input: { label?: string | null; tenant_id?: string | null }) {
      requireGlobal(actor, 'creating admin tokens');
      const id = generateKeyId();
      const token = `dlm_at_${id}_${randomBytes(32).toString('base64url')}`;
      const now = new Date(clock());
      const row = await withTransaction(pool, async (db) => {
        if (input.tenant_id && !(await deps.tenants.findById(db, input.tenant_id))) {
          throw new NotFoundError(`tenant ${input.tenant_id}`);
        }
        const created = await tokens.insert(db, {
          id,
          digest: sha256(token),
          label: input.label ?? null,
          tenantId: input.tenant_id ?? null,
          createdAt: now,
        });
        await audit.record(
          db,
          actor,
          {
            action: 'admin_token.create',
            objectType: 'admin_token',
            objectId: id,
            tenantId: created.tenant_id,
            details: { label: created.label, scope: created.tenant_id ? 'tenant' : 'global' },
          },
          now,
        );
        return created;
      });
      return { ...toView(row), token };
    },

    async list(actor: Actor, query: { limit: number; cursor?: string }): Promise<Page<AdminTokenView>> {
      requireGlobal(actor, 'listing admin tokens');
      // Token ids are made by generateKeyId.
      const rows = await tokens.list(pool, { limit: query.limit, after: parseCursor(query.cursor, isKeyId) });
      return toPage(rows, query.limit, (row) => row.id, toView);
    },

    async revoke(actor: Actor, id: string): Promise<void> {
      requireGlobal(actor, 'revoking admin tokens');
      const now = new Date(clock());
      await withTransaction(pool, async (db) => {
        const row = await tokens.revoke(db, id, now);
        if (!row) throw new NotFoundError(`admin token ${id}`);
        await audit.record(
          db,
          actor,
          { action: 'admin_token.revoke', objectType: 'admin_token', objectId: id, tenantId: row.tenant_id },
          now,
        );
      });
    },
  };
}

export type AdminTokenService = ReturnType<typeof createAdminTokenService>;
