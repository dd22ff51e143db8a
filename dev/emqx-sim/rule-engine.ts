import {
  eventOfTopic,
  parseRuleSql,
  renderHttpAction,
  ruleSelects,
  selectOutput,
  type RenderedRequest,
  type RuleSql,
  type Values,
} from './templates.js';
import { hoconObject, type HoconObject } from './hocon.js';
import { IGNORE_SYS_MESSAGE_DEFAULT, RULE_METADATA_COLUMN } from './emqx-facts.js';
import type { SimLog } from './log.js';

interface LoadedRule {
  readonly id: string;
  readonly sql: RuleSql;
  readonly actions: readonly string[];
}

export interface RuleEngine<T = void> {
  /** Rule ids that run, and the ones skipped with the reason. */
  readonly loaded: readonly string[];
  readonly skipped: ReadonlyArray<{ id: string; why: string }>;
  /** Runs every rule that selects the event; each action's request goes to `dispatch`, whose results come back. */
  fire(event: Values): T[];
}

/**
 * The rules of `rule_engine.rules` in emqx.conf, evaluated over the events the
 * simulation raises (`emitted`). A rule whose SQL is beyond the evaluated
 * subset, that selects an event the simulation never raises, or that uses an
 * action other than an HTTP action, is skipped with a warning: the
 * simulation runs what it can rather than refusing to start.
 */
export function createRuleEngine<T>(options: {
  config: HoconObject;
  emitted: ReadonlySet<string>;
  dispatch: (action: string, request: RenderedRequest, label: string) => T;
  log: SimLog;
}): RuleEngine<T> {
  const { config, log } = options;
  const configured = config.rule_engine === undefined ? undefined : hoconObject(config, 'rule_engine').ignore_sys_message;
  const ignoreSys = typeof configured === 'boolean' ? configured : IGNORE_SYS_MESSAGE_DEFAULT;
  const rules: LoadedRule[] = [];
  const skipped: Array<{ id: string; why: string }> = [];
  const definitions = config.rule_engine === undefined ? {} : hoconObject(config, 'rule_engine.rules');

  for (const [id, definition] of Object.entries(definitions)) {
    const why = problem(definition);
    if (typeof why === 'string') {
      skipped.push({ id, why });
      log.warn(`rule ${id} skipped: ${why}`);
    } else if (why !== null) {
      rules.push({ id, ...why });
    }
  }

  /** The loaded rule, null for a disabled one, or why it cannot run here. */
  function problem(definition: unknown): Omit<LoadedRule, 'id'> | string | null {
    if (definition === null || typeof definition !== 'object' || Array.isArray(definition)) return 'not an object';
    const rule = definition as HoconObject;
    if (rule.enable === false) return null;
    if (typeof rule.sql !== 'string') return 'no sql';
    let sql: RuleSql;
    try {
      sql = parseRuleSql(rule.sql);
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
    for (const source of sql.from) {
      if (!source.startsWith('$events/')) continue;
      const event = eventOfTopic(source);
      if (event === undefined || !options.emitted.has(event)) return `FROM "${source}" is not raised by the simulation`;
    }
    const actions = Array.isArray(rule.actions) ? rule.actions : [];
    if (actions.length === 0) return 'no actions';
    for (const action of actions) {
      if (typeof action !== 'string' || !action.startsWith('http:')) return `action ${JSON.stringify(action)} is not an HTTP action`;
      try {
        hoconObject(config, `actions.http.${action.slice('http:'.length)}`);
      } catch {
        return `action ${action} is not configured`;
      }
    }
    return { sql, actions: actions as string[] };
  }

  return {
    loaded: rules.map((rule) => rule.id),
    skipped,
    fire(event) {
      const results: T[] = [];
      if (ignoreSys && event.event === 'message.publish' && typeof event.topic === 'string' && event.topic.startsWith('$SYS/')) return results;
      for (const rule of rules) {
        if (!ruleSelects(rule.sql, event)) continue;
        const output = selectOutput(rule.sql, { ...event, [RULE_METADATA_COLUMN]: { rule_id: rule.id } });
        for (const action of rule.actions) {
          results.push(options.dispatch(action, renderHttpAction(config, action, output), `${String(event.event)} ${String(event.clientid ?? event.topic ?? '')} (rule ${rule.id})`));
        }
      }
      return results;
    },
  };
}
