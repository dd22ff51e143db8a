import { ACL_TOPIC_PLACEHOLDERS, UNDEFINED_RENDERS_AS } from './emqx-facts.js';
import { topicMatches } from './templates.js';

/**
 * The client ACL that an HTTP authenticator returns with `allow`, as EMQX checks it before every authorization source:
 * rules in order, the first that matches decides; none matching falls through
 * to the sources.
 */
export interface AclRule {
  readonly permission: 'allow' | 'deny';
  readonly action: 'publish' | 'subscribe' | 'all';
  /** Topic filters; `eq ` before one means the filter's exact text, wildcards included. */
  readonly topics: readonly string[];
  /** QoS levels the rule applies to; absent = all. */
  readonly qos?: readonly number[];
  /** Retain flag the rule applies to; absent = both. */
  readonly retain?: boolean;
}

export interface AccessRequest {
  readonly action: 'publish' | 'subscribe';
  /** The published topic, or the subscription's filter. */
  readonly topic: string;
  readonly qos: number;
  readonly retain: boolean;
  readonly clientid: string;
  readonly username: string;
}

/** Reads one rule of an authn answer's `acl`; null when EMQX would refuse it (and with it the connect). */
export function parseAclRule(value: unknown): AclRule | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const rule = value as Record<string, unknown>;
  if (rule.permission !== 'allow' && rule.permission !== 'deny') return null;
  if (rule.action !== 'publish' && rule.action !== 'subscribe' && rule.action !== 'all') return null;
  const topics = typeof rule.topic === 'string' ? [rule.topic] : rule.topics;
  if (!Array.isArray(topics) || topics.length === 0 || !topics.every((topic) => typeof topic === 'string' && topic !== '')) return null;
  let qos: number[] | undefined;
  if (rule.qos !== undefined) {
    const levels = Array.isArray(rule.qos) ? rule.qos : [rule.qos];
    if (!levels.every((level) => level === 0 || level === 1 || level === 2)) return null;
    qos = levels as number[];
  }
  let retain: boolean | undefined;
  if (rule.retain !== undefined && rule.retain !== 'all') {
    if (typeof rule.retain !== 'boolean') return null;
    retain = rule.retain;
  }
  return {
    permission: rule.permission,
    action: rule.action,
    topics: topics as string[],
    ...(qos ? { qos } : {}),
    ...(retain !== undefined ? { retain } : {}),
  };
}

function filterMatches(filter: string, request: AccessRequest): boolean {
  const values: Readonly<Record<string, string>> = { clientid: request.clientid, username: request.username };
  const rendered = ACL_TOPIC_PLACEHOLDERS.reduce((topic, name) => topic.replaceAll(`\${${name}}`, values[name] ?? UNDEFINED_RENDERS_AS.auth), filter);
  if (rendered.startsWith('eq ')) return rendered.slice(3) === request.topic;
  // For a subscription the requested filter is matched as a name: its own
  // wildcards match only the same wildcard in the rule, so "devices/+/commands"
  // is not inside "devices/d1/commands".
  return topicMatches(rendered, request.topic);
}

/** `allow` or `deny` from the first rule that matches, `nomatch` when none does. */
export function checkAcl(rules: readonly AclRule[], request: AccessRequest): 'allow' | 'deny' | 'nomatch' {
  for (const rule of rules) {
    if (rule.action !== 'all' && rule.action !== request.action) continue;
    if (rule.qos && !rule.qos.includes(request.qos)) continue;
    if (rule.retain !== undefined && request.action === 'publish' && rule.retain !== request.retain) continue;
    if (rule.topics.some((filter) => filterMatches(filter, request))) return rule.permission;
  }
  return 'nomatch';
}
