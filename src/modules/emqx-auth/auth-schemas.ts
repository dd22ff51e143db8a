import { z } from 'zod';

/**
 * The body our shipped EMQX authenticator sends (docs/emqx-contract.md §A): EMQX
 * renders an absent username/password as "", so only the shape is checked
 * here; every identity rule is the service's, answered as `deny`.
 */
export const authnBodySchema = z.object({
  clientid: z.string(),
  username: z.string().default(''),
  password: z.string().default(''),
  peerhost: z.string().default(''),
});

/** The body of our HTTP authorization source (§B): qos and retain arrive as strings. */
export const authzBodySchema = z.object({
  clientid: z.string(),
  username: z.string().default(''),
  topic: z.string(),
  action: z.string(),
  qos: z.union([z.string(), z.number()]).optional(),
  retain: z.union([z.string(), z.boolean()]).optional(),
});

const aclRuleSchema = z.object({
  permission: z.enum(['allow', 'deny']),
  action: z.enum(['publish', 'subscribe', 'all']),
  topic: z.string(),
});

export const authnAllowSchema = z.object({
  result: z.literal('allow'),
  is_superuser: z.literal(false),
  client_attrs: z.object({ tenant_id: z.string(), device_id: z.string() }),
  acl: z.array(aclRuleSchema),
  expire_at: z.number().int().optional(),
});

/** Every refusal is 200 {result:"deny"}: any other status means "ignore" to EMQX. */
export const authnResponseSchema = z.discriminatedUnion('result', [
  authnAllowSchema,
  z.object({ result: z.literal('deny') }),
  z.object({ result: z.literal('ignore') }),
]);

export const authzResponseSchema = z.object({ result: z.enum(['allow', 'deny', 'ignore']) });

export type AuthnResponse = z.input<typeof authnResponseSchema>;
export type AclRule = z.input<typeof aclRuleSchema>;
