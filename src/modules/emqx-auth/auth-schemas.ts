import { z } from 'zod';

/**
 * The body our shipped EMQX authenticator sends (docs/emqx-contract.md §A): EMQX
 * renders an absent username/password as "", so only the shape is checked
 * here; every identity rule is the service's, answered as `deny`.
 */
const EXAMPLE_DEVICE = '0b7f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70';

export const authnBodySchema = z
  .object({
    clientid: z.string().describe('The MQTT client id: the lowercase UUID of the device, equal to the username'),
    username: z.string().default(''),
    password: z.string().default('').describe("One of the device's API keys (`sk_live_...`) or its PSK. Never logged or echoed"),
    peerhost: z.string().default('').describe("The client's address; failed attempts are throttled by it"),
  })
  .meta({ examples: [{ clientid: EXAMPLE_DEVICE, username: EXAMPLE_DEVICE, password: 'sk_live_abcdefghijkl_…', peerhost: '203.0.113.7' }] });

/** The body of our HTTP authorization source (§B): qos and retain arrive as strings. */
export const authzBodySchema = z
  .object({
    clientid: z.string(),
    username: z.string().default(''),
    topic: z.string().describe('The topic or topic filter, compared as an exact string: a wildcard filter is never a device\'s own topic'),
    action: z.string().describe('`publish` or `subscribe`; anything else is denied'),
    qos: z.union([z.string(), z.number()]).optional(),
    retain: z.union([z.string(), z.boolean()]).optional(),
  })
  .meta({
    examples: [{ clientid: EXAMPLE_DEVICE, username: EXAMPLE_DEVICE, topic: `devices/${EXAMPLE_DEVICE}/telemetry`, action: 'publish', qos: '1', retain: 'false' }],
  });

const aclRuleSchema = z.object({
  permission: z.enum(['allow', 'deny']),
  action: z.enum(['publish', 'subscribe', 'all']),
  topic: z.string(),
});

export const authnAllowSchema = z
  .object({
    result: z.literal('allow'),
    is_superuser: z.literal(false),
    client_attrs: z
      .object({ tenant_id: z.string(), device_id: z.string() })
      .optional()
      .describe("Kept by EMQX with the session, and sent back in the device's events; absent for the service's own identity (the telemetry subscriber)"),
    acl: z.array(aclRuleSchema).describe('The rules EMQX checks before any authorization source, first match wins; they end in deny-all'),
    expire_at: z.number().int().optional().describe('Unix seconds at which EMQX ends the session: present when the key used has `not_after`'),
  })
  .meta({ id: 'EmqxAuthnAllow' });

/** Every refusal is 200 {result:"deny"}: any other status means "ignore" to EMQX. */
export const authnResponseSchema = z.discriminatedUnion('result', [
  authnAllowSchema,
  z.object({ result: z.literal('deny') }),
  z.object({ result: z.literal('ignore') }),
]);

export const authzResponseSchema = z.object({ result: z.enum(['allow', 'deny', 'ignore']) });

export type AuthnResponse = z.input<typeof authnResponseSchema>;
export type AclRule = z.input<typeof aclRuleSchema>;
