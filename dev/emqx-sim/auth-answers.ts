import { parseAclRule, type AclRule } from './acl.js';
import { AUTHN_ANSWER, AUTHZ_ANSWER } from './emqx-facts.js';
import type { HttpAnswer } from './service.js';

/** What an HTTP authenticator's answer means to EMQX 5.8 (AUTHN_ANSWER in emqx-facts.ts). */
export type AuthnDecision =
  | {
      readonly result: 'allow';
      readonly superuser: boolean;
      readonly clientAttrs: Readonly<Record<string, string>>;
      /** Checked before the authorization sources; empty when the answer had none. */
      readonly acl: readonly AclRule[];
      /** Unix seconds at which EMQX disconnects the client. */
      readonly expireAt?: number;
    }
  | { readonly result: 'deny' }
  | { readonly result: 'ignore'; readonly why: string };

function jsonBody(answer: HttpAnswer): Record<string, unknown> | null {
  if (!/^application\/json\b/i.test(answer.contentType)) return null;
  try {
    const body: unknown = JSON.parse(answer.body);
    return body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function isSuperuser(value: unknown): boolean {
  if ((AUTHN_ANSWER.superuser as readonly unknown[]).includes(value)) return true;
  return typeof value === 'number' && Number.isInteger(value) && value >= 1;
}

/**
 * 204 allows; 200 with a JSON `result` decides; anything else (another
 * status, an unparsable body, an unknown result) is `ignore`. An allow whose
 * extra fields EMQX cannot use is not an allow: a bad `client_attrs` value is
 * `ignore`, and a bad ACL rule or an `expire_at` that is not a future integer
 * of seconds fails the connect (`deny` here, since both refuse the client).
 */
export function readAuthnAnswer(answer: HttpAnswer, nowMs: number): AuthnDecision {
  if (answer.status === AUTHN_ANSWER.allowStatus) return { result: 'allow', superuser: false, clientAttrs: {}, acl: [] };
  if (answer.status !== AUTHN_ANSWER.decideStatus) return { result: 'ignore', why: `status ${answer.status}` };
  const body = jsonBody(answer);
  if (!body) return { result: 'ignore', why: 'not a JSON object' };
  if (body.result === 'deny') return { result: 'deny' };
  if (body.result !== 'allow') return { result: 'ignore', why: `result ${JSON.stringify(body.result)}` };

  const clientAttrs: Record<string, string> = {};
  if (body.client_attrs !== undefined) {
    if (body.client_attrs === null || typeof body.client_attrs !== 'object' || Array.isArray(body.client_attrs)) {
      return { result: 'ignore', why: 'client_attrs is not an object' };
    }
    for (const [key, value] of Object.entries(body.client_attrs)) {
      if (typeof value !== 'string') return { result: 'ignore', why: `client_attrs.${key} is not a string` };
      if (AUTHN_ANSWER.clientAttrKey.test(key)) clientAttrs[key] = value;
    }
  }

  const acl: AclRule[] = [];
  if (body.acl !== undefined) {
    if (!Array.isArray(body.acl)) return { result: 'deny' };
    for (const value of body.acl) {
      const rule = parseAclRule(value);
      if (!rule) return { result: 'deny' };
      acl.push(rule);
    }
  }

  let expireAt: number | undefined;
  if (body.expire_at !== undefined) {
    const value = body.expire_at;
    if (typeof value !== 'number' || !Number.isInteger(value) || value * 1000 <= nowMs) return { result: 'deny' };
    expireAt = value;
  }

  return { result: 'allow', superuser: isSuperuser(body.is_superuser), clientAttrs, acl, ...(expireAt !== undefined ? { expireAt } : {}) };
}

/** An HTTP authorization source's answer: null = not decided here, try the next source. */
export function readAuthzAnswer(answer: HttpAnswer): 'allow' | 'deny' | null {
  if (answer.status === AUTHZ_ANSWER.allowStatus) return 'allow';
  if (answer.status !== AUTHZ_ANSWER.decideStatus) return null;
  const result = jsonBody(answer)?.result;
  return result === 'allow' || result === 'deny' ? result : null;
}
