import { EVENT_TOPICS, PLACEHOLDERS, UNDEFINED_RENDERS_AS } from './emqx-facts.js';
import { hoconObject, type HoconObject, type HoconValue } from './hocon.js';

/**
 * What EMQX does with the request templates of deploy/emqx/emqx.conf:
 * placeholders rendered per context (the facts in emqx-facts.ts), the rule's
 * SELECT evaluated over an event, and the HTTP action's request built from
 * connector + action. A placeholder EMQX does not offer in a context, or SQL
 * outside the small subset below, is an error: the configuration must not
 * depend on it.
 */

export type Values = Readonly<Record<string, unknown>>;

export const AUTHN_PLACEHOLDERS: ReadonlySet<string> = new Set(PLACEHOLDERS.authn);
export const AUTHZ_PLACEHOLDERS: ReadonlySet<string> = new Set(PLACEHOLDERS.authz);

const PLACEHOLDER = /\$\{([^}]*)\}/g;

function lookup(values: Values, path: string): unknown {
  let current: unknown = values;
  for (const segment of path.split('.')) {
    if (current === null || typeof current !== 'object' || Buffer.isBuffer(current)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

function asText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

export interface RenderOptions {
  /** Placeholder names EMQX offers here; `null` = any field of the values (rule output). */
  known: ReadonlySet<string> | null;
  /** How an undefined value renders: `UNDEFINED_RENDERS_AS.auth` or `.rule`. */
  undefinedAs: (typeof UNDEFINED_RENDERS_AS)[keyof typeof UNDEFINED_RENDERS_AS];
}

export function renderPlaceholders(template: string, values: Values, options: RenderOptions): string {
  return template.replace(PLACEHOLDER, (_match, raw: string) => {
    const path = raw.trim();
    const root = path.split('.')[0] ?? '';
    const offered = options.known === null || options.known.has(path) || (root === PLACEHOLDERS.namespace && path !== root);
    if (!offered) throw new Error(`EMQX offers no placeholder \${${path}} here`);
    const value = lookup(values, path);
    return value === undefined || value === null ? options.undefinedAs : asText(value);
  });
}

function stringMap(object: HoconObject, what: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(object)) {
    if (typeof value !== 'string') throw new Error(`${what}.${key} must be a string template`);
    result[key] = value;
  }
  return result;
}

export interface RenderedRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path (and query) of the request; the host is the service. */
  url: string;
  host: string;
  headers: Record<string, string>;
  body: string;
}

function method(value: HoconValue | undefined, fallback: 'post'): RenderedRequest['method'] {
  const name = value === undefined ? fallback : value;
  if (name !== 'get' && name !== 'post' && name !== 'put' && name !== 'delete') throw new Error(`unsupported method ${String(name)}`);
  return name.toUpperCase() as RenderedRequest['method'];
}

/**
 * The request of an HTTP authenticator or HTTP authorization source:
 * the body map's values rendered, sent as a JSON object, and the headers.
 */
export function renderAuthRequest(source: HoconObject, values: Values, known: ReadonlySet<string>): RenderedRequest {
  if (typeof source.url !== 'string') throw new Error('the HTTP source has no url');
  const url = new URL(source.url);
  const headers = Object.fromEntries(
    Object.entries(stringMap(hoconObject(source, 'headers'), 'headers')).map(([name, value]) => [
      name.toLowerCase(),
      renderPlaceholders(value, values, { known, undefinedAs: UNDEFINED_RENDERS_AS.auth }),
    ]),
  );
  if (headers['content-type'] !== 'application/json') throw new Error('the request body is not sent as JSON');
  const body = Object.fromEntries(
    Object.entries(stringMap(hoconObject(source, 'body'), 'body')).map(([name, value]) => [
      name,
      renderPlaceholders(value, values, { known, undefinedAs: UNDEFINED_RENDERS_AS.auth }),
    ]),
  );
  return { method: method(source.method, 'post'), url: url.pathname + url.search, host: url.host, headers, body: JSON.stringify(body) };
}

// ---------------------------------------------------------------------------
// Rule SQL: SELECT <column | 'literal' | fn(column)> [as alias], ... FROM "<topic>", ...
//           [WHERE <column> =~ '<topic filter>']

type Expression =
  | { kind: 'column'; name: string }
  | { kind: 'literal'; value: string }
  | { kind: 'call'; fn: 'base64_encode'; argument: Expression };

export interface RuleSql {
  readonly columns: ReadonlyArray<{ expression: Expression; alias: string }>;
  readonly from: readonly string[];
  /** `WHERE column =~ 'filter'`: the column's value must match the MQTT topic filter. */
  readonly where?: { readonly column: string; readonly filter: string };
}

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let current = '';
  for (const char of text) {
    if (quote) {
      if (char === quote) quote = null;
    } else if (char === "'" || char === '"') quote = char;
    else if (char === '(') depth += 1;
    else if (char === ')') depth -= 1;
    else if (char === ',' && depth === 0) {
      parts.push(current.trim());
      current = '';
      continue;
    }
    current += char;
  }
  if (current.trim() !== '') parts.push(current.trim());
  return parts;
}

function parseExpression(text: string): Expression {
  const literal = /^'([^']*)'$/.exec(text);
  if (literal) return { kind: 'literal', value: literal[1] as string };
  const call = /^([a-z_0-9]+)\((.*)\)$/i.exec(text);
  if (call) {
    const fn = (call[1] as string).toLowerCase();
    if (fn !== 'base64_encode') throw new Error(`rule function ${fn} is not simulated`);
    return { kind: 'call', fn, argument: parseExpression((call[2] as string).trim()) };
  }
  if (/^[a-z_][a-z_0-9]*$/i.test(text)) return { kind: 'column', name: text };
  throw new Error(`rule expression ${text} is not simulated`);
}

export function parseRuleSql(sql: string): RuleSql {
  const match = /^\s*SELECT\s+([\s\S]+?)\s+FROM\s+([\s\S]+?)\s*$/i.exec(sql);
  if (!match) throw new Error(`not a SELECT ... FROM ... rule: ${sql}`);
  const select = match[1] ?? '';
  let from = match[2] ?? '';
  let where: RuleSql['where'];
  const whereAt = from.search(/\bWHERE\b/i);
  if (whereAt >= 0) {
    const condition = /^WHERE\s+([a-z_][a-z_0-9]*)\s*=~\s*'([^']+)'$/i.exec(from.slice(whereAt).trim());
    if (!condition) throw new Error(`${from.slice(whereAt).trim()}: only WHERE <column> =~ '<topic filter>' is simulated`);
    where = { column: condition[1] as string, filter: condition[2] as string };
    from = from.slice(0, whereAt).trim();
  }
  const columns = splitTopLevel(select).map((item) => {
    if (item === '*') throw new Error('SELECT * is not simulated: name the fields');
    const aliased = /^([\s\S]+?)\s+as\s+([a-z_][a-z_0-9]*)$/i.exec(item);
    const expression = parseExpression((aliased?.[1] ?? item).trim());
    const alias = aliased ? (aliased[2] as string) : expression.kind === 'column' ? expression.name : null;
    if (alias === null) throw new Error(`${item} needs an alias`);
    return { expression, alias };
  });
  const topics = splitTopLevel(from).map((topic) => {
    const quoted = /^"([^"]+)"$/.exec(topic);
    if (!quoted) throw new Error(`FROM ${topic}: topics are double-quoted`);
    return quoted[1] as string;
  });
  return where ? { columns, from: topics, where } : { columns, from: topics };
}

/** The event a `$events/...` FROM selects, or undefined for one the facts do not list. */
export function eventOfTopic(topic: string): string | undefined {
  return (EVENT_TOPICS as Readonly<Record<string, string>>)[topic];
}

export function topicMatches(filter: string, topic: string): boolean {
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  // MQTT: wildcards at the first level do not match topics starting with "$".
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  for (let index = 0; index < filterLevels.length; index += 1) {
    const level = filterLevels[index];
    if (level === '#') return true;
    if (index >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[index]) return false;
  }
  return filterLevels.length === topicLevels.length;
}

export function ruleSelects(rule: RuleSql, event: Values): boolean {
  if (rule.where) {
    const value = event[rule.where.column];
    if (typeof value !== 'string' || !topicMatches(rule.where.filter, value)) return false;
  }
  return rule.from.some((topic) => {
    if (topic.startsWith('$events/')) {
      const name = eventOfTopic(topic);
      if (name === undefined) throw new Error(`${topic} is not simulated`);
      return event.event === name;
    }
    return event.event === 'message.publish' && typeof event.topic === 'string' && topicMatches(topic, event.topic);
  });
}

function evaluate(expression: Expression, event: Values): unknown {
  switch (expression.kind) {
    case 'literal':
      return expression.value;
    case 'column':
      return event[expression.name];
    case 'call': {
      const value = evaluate(expression.argument, event);
      if (value === undefined) return undefined;
      return (Buffer.isBuffer(value) ? value : Buffer.from(asText(value), 'utf8')).toString('base64');
    }
  }
}

/** The rule's SELECT output for an event (fields EMQX does not have stay undefined). */
export function selectOutput(rule: RuleSql, event: Values): Record<string, unknown> {
  if (!ruleSelects(rule, event)) throw new Error(`the rule does not select ${String(event.event)} on ${String(event.topic)}`);
  return Object.fromEntries(rule.columns.map(({ expression, alias }) => [alias, evaluate(expression, event)]));
}

/**
 * EMQX's JSON of a rule output: undefined values become the string
 * "undefined"; a raw payload (bytes) becomes a string, invalid UTF-8 replaced.
 */
export function encodeRuleOutput(output: Values): string {
  return JSON.stringify(output, (_key, value: unknown) => {
    if (value === undefined) return UNDEFINED_RENDERS_AS.rule;
    if (value !== null && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer') {
      return Buffer.from((value as { data: number[] }).data).toString('utf8');
    }
    return value;
  });
}

/**
 * The request an HTTP action (`http:<name>` in a rule's actions) sends for a
 * rule output: the connector's URL and headers, the action's path, method and
 * headers (the action's win), and the body template — none means the whole
 * output as JSON.
 */
export function renderHttpAction(config: HoconObject, actionRef: string, output: Values): RenderedRequest {
  const [type, name] = actionRef.split(':');
  if (type !== 'http' || !name) throw new Error(`${actionRef} is not an HTTP action`);
  const action = hoconObject(config, `actions.http.${name}`);
  if (typeof action.connector !== 'string') throw new Error(`action ${name} names no connector`);
  const connector = hoconObject(config, `connectors.http.${action.connector}`);
  const parameters = hoconObject(action, 'parameters');
  if (typeof connector.url !== 'string') throw new Error(`connector ${action.connector} has no url`);
  const base = new URL(connector.url);
  const render = (template: string) => renderPlaceholders(template, output, { known: null, undefinedAs: UNDEFINED_RENDERS_AS.rule });
  const path = typeof parameters.path === 'string' ? render(parameters.path) : '';
  const joined = `${base.pathname.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
  const headers: Record<string, string> = {};
  const connectorHeaders = connector.headers === undefined ? {} : stringMap(hoconObject(connector, 'headers'), 'connector headers');
  const actionHeaders = parameters.headers === undefined ? {} : stringMap(hoconObject(parameters, 'headers'), 'action headers');
  for (const [header, value] of Object.entries({ ...connectorHeaders, ...actionHeaders })) headers[header.toLowerCase()] = render(value);
  if (parameters.body !== undefined && typeof parameters.body !== 'string') throw new Error('the action body must be a string template');
  const body = parameters.body === undefined ? encodeRuleOutput(output) : render(parameters.body);
  return { method: method(parameters.method, 'post'), url: joined, host: base.host, headers, body };
}
