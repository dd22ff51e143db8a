import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { parse } from 'yaml';
import { createTestContext, type TestContext } from '../helpers/context.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ALERTS = path.join(REPO_ROOT, 'deploy/observability/alerts.yaml');
const DASHBOARD = path.join(REPO_ROOT, 'deploy/observability/grafana-dashboard.json');

/** Debian's prometheus package ships promtool; never skipped. */
function findPromtool(): string {
  const candidate = process.env.PROMTOOL ?? 'promtool';
  const found = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
  if (found.error || found.status !== 0) {
    throw new Error(
      `promtool not found (${candidate}): install Debian's prometheus package (apt-get install -y prometheus), ` +
        'which ships it, set PROMTOOL to its path, or run bash .ci/run, which installs it',
    );
  }
  return candidate;
}

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan', 'le']);

/**
 * The metric names a PromQL expression reads: identifiers that are neither
 * functions nor keywords, once label matchers, ranges, strings and grouping
 * clauses are taken out. Grafana's variables ($__rate_interval, $job) go
 * with the matchers and ranges they sit in.
 */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?[0-9a-z]+/gi, ' ')
    .replace(/(?<![A-Za-z0-9_:])\d+(?:\.\d+)?(?:e[+-]?\d+)?/gi, ' ');
  const names = new Set<string>();
  for (const match of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const word = match[0];
    const next = bare.slice((match.index ?? 0) + word.length).trimStart();
    if (next.startsWith('(') || PROMQL_WORDS.has(word.toLowerCase()) || /^\d/.test(word)) continue;
    names.add(word);
  }
  return [...names];
}

interface Panel {
  title?: string;
  panels?: Panel[];
  targets?: { expr?: string }[];
}

function dashboardExpressions(): { where: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[]; templating: { list: { name: string; query?: unknown; definition?: string }[] } };
  const found: { where: string; expr: string }[] = [];
  const visit = (panel: Panel) => {
    for (const target of panel.targets ?? []) if (target.expr) found.push({ where: `panel "${panel.title}"`, expr: target.expr });
    for (const inner of panel.panels ?? []) visit(inner);
  };
  for (const panel of dashboard.panels) visit(panel);
  for (const variable of dashboard.templating.list) {
    const query = /label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)/.exec(variable.definition ?? '');
    if (query) found.push({ where: `variable $${variable.name}`, expr: query[1] as string });
  }
  return found;
}

function alertExpressions(): { where: string; expr: string }[] {
  const file = parse(readFileSync(ALERTS, 'utf8')) as { groups: { rules: { alert?: string; record?: string; expr: string }[] }[] };
  return file.groups.flatMap((group) => group.rules.map((rule) => ({ where: `rule ${rule.alert ?? rule.record}`, expr: rule.expr })));
}

/** Every name a scrape of /metrics may carry: declared families (with or without samples yet) and their histogram series. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const declared = /^# TYPE (\S+) (\S+)/.exec(line);
    if (declared) {
      const [, name, type] = declared as unknown as [string, string, string];
      names.add(name);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
      if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
    } else if (line && !line.startsWith('#')) {
      names.add(line.split(/[{\s]/)[0] as string);
    }
  }
  return names;
}

describe('dashboards and alerts (deploy/observability)', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let exported: Set<string>;

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
    const scraped = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(scraped.statusCode, 200);
    exported = exportedNames(scraped.body);
  });
  after(() => ctx.close());

  it('the alert rules pass promtool check rules', () => {
    const result = spawnSync(findPromtool(), ['check', 'rules', ALERTS], { encoding: 'utf8' });
    assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /SUCCESS: \d+ rules found/);
  });

  it('the dashboard and the alert rules name only metrics the service exports', () => {
    const expressions = [...dashboardExpressions(), ...alertExpressions()];
    assert.ok(expressions.length > 20, `${expressions.length} expressions found`);
    const missing = expressions.flatMap(({ where, expr }) => metricNames(expr).filter((name) => !exported.has(name)).map((name) => `${where}: ${name}`));
    assert.deepEqual(missing, []);
    // And the parser finds what the expressions do name.
    const named = new Set(expressions.flatMap(({ expr }) => metricNames(expr)));
    for (const name of ['devicelink_authn_total', 'devicelink_http_request_duration_seconds_bucket', 'devicelink_dependency_up', 'process_cpu_seconds_total']) {
      assert.ok(named.has(name), name);
    }
  });

  it('the dashboard covers authn/authz, latency, ingest, Kafka produce latency, commands, pending kicks and dependency state', () => {
    const named = new Set(dashboardExpressions().flatMap(({ expr }) => metricNames(expr)));
    for (const name of [
      'devicelink_authn_total',
      'devicelink_authz_total',
      'devicelink_http_request_duration_seconds_bucket',
      'devicelink_telemetry_accepted_total',
      'devicelink_telemetry_dead_lettered_total',
      'devicelink_telemetry_unavailable_total',
      'devicelink_telemetry_produce_duration_seconds_bucket',
      'devicelink_commands_unfinished',
      'devicelink_change_effects_pending',
      'devicelink_dependency_up',
    ]) {
      assert.ok(named.has(name), `the dashboard shows ${name}`);
    }
  });

  it("every metric of the service's own carries the devicelink_ prefix; the rest are prom-client's process and Node.js metrics", () => {
    const foreign = [...exported].filter((name) => !name.startsWith('devicelink_') && !name.startsWith('process_') && !name.startsWith('nodejs_'));
    assert.deepEqual(foreign, []);
    assert.ok([...exported].filter((name) => name.startsWith('devicelink_')).length > 30);
  });

  it('reads metric names out of PromQL', () => {
    assert.deepEqual(metricNames('sum by (le, route) (rate(a_bucket{job=~"$job",route=~"/x/.*"}[$__rate_interval])) / clamp_min(b, 1e-9) > 0.01'), ['a_bucket', 'b']);
    assert.deepEqual(metricNames('max by (effect) (1 - c) == 1 and on (instance) d offset 5m'), ['c', 'd']);
  });
});
