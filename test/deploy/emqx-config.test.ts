import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  encodeRuleOutput,
  parseRuleSql,
  renderAuthRequest,
  renderHttpAction,
  renderPlaceholders,
  ruleSelects,
  selectOutput,
  topicMatches,
  eventOfTopic,
  type RuleSql,
  AUTHN_PLACEHOLDERS,
  AUTHZ_PLACEHOLDERS,
} from '../../dev/emqx-sim/templates.js';
import { durationMs, EMQX_ENTRYPOINT, EMQX_TEMPLATE, renderEmqxConfig } from '../../dev/emqx-sim/emqx-config.js';
import { BASIC_COLUMNS, EVENT_COLUMNS, RULE_METADATA_COLUMN, type EventName } from '../../dev/emqx-sim/emqx-facts.js';
import { hoconAt, hoconObject, hoconString, parseHocon, type HoconObject } from '../../dev/emqx-sim/hocon.js';

const TOKEN = 'deploy-test-hook-token-0123456789';

/** A HOCON byte size as EMQX reads it ("64MB" = 64 MiB). */
function bytes(value: unknown): number {
  const match = typeof value === 'string' ? /^(\d+)(KB|MB|GB)$/.exec(value) : null;
  if (!match) throw new Error(`not a byte size: ${String(value)}`);
  return Number(match[1]) * { KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[match[2] as 'KB' | 'MB' | 'GB'];
}
const ENV = { DEVICE_LINK_HOOK_TOKEN: TOKEN, DEVICE_LINK_API_KEY: 'device-link', DEVICE_LINK_API_SECRET: 'api-secret-0123' };

describe('the HOCON reader used on deploy/emqx/emqx.conf', () => {
  it('nests dotted keys, merges repeated objects and reads every value kind', () => {
    const parsed = parseHocon(
      [
        '# comment',
        'a.b.c = 1 // trailing comment',
        'a.b { d = "x", e = true }',
        'a { f = [1, "two", null,',
        '  { g = -2.5 }] }',
        '"quoted.key": word_1',
        'sql = """SELECT "t" FROM "x/+" """',
        'later = 1',
        'later = { replaced = yes }',
      ].join('\n'),
    );
    assert.deepEqual(parsed, {
      a: { b: { c: 1, d: 'x', e: true }, f: [1, 'two', null, { g: -2.5 }] },
      'quoted.key': 'word_1',
      sql: 'SELECT "t" FROM "x/+" ',
      later: { replaced: 'yes' },
    });
    assert.equal(hoconAt(parsed, 'a.f.3.g'), -2.5);
  });

  it('refuses what it cannot read the way EMQX does', () => {
    assert.throws(() => parseHocon('a = ${b}'), /substitutions/);
    assert.throws(() => parseHocon('include "other.conf"'), /include/);
    assert.throws(() => parseHocon('a = one two'), /concatenation/);
    assert.throws(() => parseHocon('a += 1'), /\+=/);
    assert.throws(() => parseHocon('a { b = 1'), /end of file/);
    assert.throws(() => parseHocon('a = "open'), /unterminated/);
  });
});

describe('EMQX template rendering', () => {
  it('renders undefined as "" in authn/authz templates and as "undefined" in rule output', () => {
    const values = { clientid: 'c1', client_attrs: { tenant_id: 't1' } };
    assert.equal(renderPlaceholders('${clientid}/${username}', values, { known: AUTHN_PLACEHOLDERS, undefinedAs: '' }), 'c1/');
    assert.equal(renderPlaceholders('${client_attrs.tenant_id}', values, { known: AUTHZ_PLACEHOLDERS, undefinedAs: '' }), 't1');
    assert.equal(renderPlaceholders('${nothing}', values, { known: null, undefinedAs: 'undefined' }), 'undefined');
    assert.equal(encodeRuleOutput({ a: undefined, b: Buffer.from('hi') }), '{"a":"undefined","b":"hi"}');
  });

  it('refuses placeholders EMQX does not offer in the context', () => {
    assert.throws(() => renderPlaceholders('${topic}', {}, { known: AUTHN_PLACEHOLDERS, undefinedAs: '' }), /no placeholder/);
    assert.throws(() => renderPlaceholders('${password}', {}, { known: AUTHZ_PLACEHOLDERS, undefinedAs: '' }), /no placeholder/);
  });

  it('matches MQTT topic filters', () => {
    assert.equal(topicMatches('devices/+/telemetry', 'devices/abc/telemetry'), true);
    assert.equal(topicMatches('devices/+/telemetry', 'devices/abc/commands'), false);
    assert.equal(topicMatches('devices/+/telemetry', 'devices/a/b/telemetry'), false);
    assert.equal(topicMatches('devices/#', 'devices/a/b'), true);
    assert.equal(topicMatches('+/x', '$SYS/x'), false);
  });

  it('evaluates the supported rule SQL', () => {
    const rule = parseRuleSql(`SELECT clientid, base64_encode(payload) as payload, 'b' as marker FROM "devices/+/telemetry", "$events/client_connected"`);
    const output = selectOutput(rule, { event: 'message.publish', topic: 'devices/d/telemetry', clientid: 'd', payload: Buffer.from([0xff, 0x00]) });
    assert.deepEqual(output, { clientid: 'd', payload: '/wA=', marker: 'b' });
    assert.equal(ruleSelects(rule, { event: 'client.connected' }), true);
    assert.equal(ruleSelects(rule, { event: 'client.disconnected' }), false);
    assert.throws(() => parseRuleSql('SELECT * FROM "t"'), /SELECT \*/);
    assert.throws(() => parseRuleSql('SELECT a FROM "t" WHERE a = 1'), /WHERE/);
    const filtered = parseRuleSql(`SELECT event, topic FROM "$events/message_acked" WHERE topic =~ 'devices/+/commands'`);
    assert.equal(ruleSelects(filtered, { event: 'message.acked', topic: 'devices/d/commands' }), true);
    assert.equal(ruleSelects(filtered, { event: 'message.acked', topic: 'devices/d/telemetry' }), false);
    assert.equal(ruleSelects(filtered, { event: 'message.delivered', topic: 'devices/d/commands' }), false);
    assert.throws(() => parseRuleSql('SELECT lower(a) as a FROM "t"'), /not simulated/);
  });
});

describe('deploy/emqx/docker-entrypoint.sh', () => {
  it('puts the hook token into every Authorization header and writes the API key file', async () => {
    const rendered = await renderEmqxConfig(ENV);
    assert.doesNotMatch(rendered.text, /@DEVICE_LINK_/);
    assert.equal(hoconString(rendered.config, 'authentication.0.headers.authorization'), `Bearer ${TOKEN}`);
    assert.equal(hoconString(rendered.config, 'authorization.sources.0.headers.authorization'), `Bearer ${TOKEN}`);
    assert.equal(hoconString(rendered.config, 'connectors.http.device_link.headers.authorization'), `Bearer ${TOKEN}`);
    assert.equal(rendered.text.split(TOKEN).length - 1, 3, 'the token appears in exactly the three headers');
    // EMQX splits each line into key:secret:role; kicks need the administrator role.
    assert.equal(rendered.apiKeys, 'device-link:api-secret-0123:administrator\n');
  });

  it('refuses to start EMQX without usable secrets', async () => {
    const refusals: Array<Record<string, string>> = [
      { DEVICE_LINK_HOOK_TOKEN: '' },
      { DEVICE_LINK_HOOK_TOKEN: 'short-token' },
      { DEVICE_LINK_HOOK_TOKEN: 'has a space in it 0123456789' },
      { DEVICE_LINK_HOOK_TOKEN: 'quote"breaks-hocon-0123456789' },
      { DEVICE_LINK_HOOK_TOKEN: 'pipe|breaks-sed-0123456789' },
      { DEVICE_LINK_HOOK_TOKEN: 'new\nline-0123456789abcdef' },
      { DEVICE_LINK_API_KEY: '' },
      { DEVICE_LINK_API_KEY: 'key:with:colons' },
      { DEVICE_LINK_API_SECRET: '' },
      { DEVICE_LINK_API_SECRET: 'secret:administrator' },
    ];
    for (const override of refusals) {
      await assert.rejects(renderEmqxConfig({ ...ENV, ...override }), (error: Error & { code?: unknown }) => {
        assert.equal(error.code, 78, JSON.stringify(override));
        return true;
      });
    }
  });
});

describe('deploy/emqx/emqx.conf', () => {
  const template = parseHocon(readFileSync(EMQX_TEMPLATE, 'utf8'));
  const rules = hoconObject(template, 'rule_engine.rules');
  const rule = (id: string) => parseRuleSql(hoconString(rules, `${id}.sql`));

  it('authenticates every client with the service only, sending the body of docs/emqx-contract.md §A', () => {
    const chain = hoconAt(template, 'authentication');
    assert.ok(Array.isArray(chain) && chain.length === 1, 'one authenticator, so "ignore" refuses the client');
    const authn = hoconObject(template, 'authentication.0');
    assert.equal(authn.mechanism, 'password_based');
    assert.equal(authn.backend, 'http');
    assert.equal(authn.method, 'post');
    assert.notEqual(authn.enable, false);
    assert.deepEqual(hoconObject(authn, 'body'), {
      clientid: '${clientid}',
      username: '${username}',
      password: '${password}',
      peerhost: '${peerhost}',
    });
    const request = renderAuthRequest(authn, { clientid: 'c', peerhost: '10.0.0.1' }, AUTHN_PLACEHOLDERS);
    assert.equal(request.url, '/emqx/authn');
    assert.deepEqual(JSON.parse(request.body), { clientid: 'c', username: '', password: '', peerhost: '10.0.0.1' });
    assert.ok(durationMs(authn.request_timeout) <= 5000, 'EMQX waits at most 5 s for an answer');
  });

  it('has our HTTP source as the only authorization source and denies what nothing decides', () => {
    const sources = hoconAt(template, 'authorization.sources');
    assert.ok(Array.isArray(sources) && sources.length === 1, 'no file source with {allow, all} before or after ours');
    assert.equal(hoconAt(template, 'authorization.sources.0.type'), 'http');
    assert.equal(hoconAt(template, 'authorization.no_match'), 'deny');
    const request = renderAuthRequest(
      hoconObject(template, 'authorization.sources.0'),
      { clientid: 'c', username: 'c', topic: 't', action: 'publish', qos: '1', retain: 'false' },
      AUTHZ_PLACEHOLDERS,
    );
    assert.equal(request.url, '/emqx/authz');
    assert.deepEqual(JSON.parse(request.body), { clientid: 'c', username: 'c', topic: 't', action: 'publish', qos: '1', retain: 'false' });
  });

  it('sends telemetry with the payload base64-encoded and marked, plus the fields ingestion reads', () => {
    const telemetry = rule('device_link_telemetry');
    assert.deepEqual(telemetry.from, ['devices/+/telemetry']);
    const payload = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const output = selectOutput(telemetry, {
      event: 'message.publish',
      id: '0006',
      clientid: 'd',
      username: 'd',
      topic: 'devices/d/telemetry',
      qos: 1,
      flags: { dup: false, retain: false },
      peerhost: '10.0.0.1',
      publish_received_at: 1,
      timestamp: 2,
      client_attrs: { tenant_id: 't' },
      payload,
      node: 'emqx@emqx',
    });
    assert.equal(output.payload, payload.toString('base64'));
    assert.equal(output.payload_encoding, 'base64');
    for (const field of ['event', 'id', 'clientid', 'username', 'topic', 'qos', 'publish_received_at', 'timestamp', 'peerhost', 'client_attrs', 'flags']) {
      assert.ok(field in output, `the telemetry rule selects ${field}`);
    }
    assert.equal(ruleSelects(telemetry, { event: 'message.publish', topic: 'devices/d/commands' }), false);
    assert.equal(ruleSelects(telemetry, { event: 'message.publish', topic: 'devices/d/telemetry/extra' }), false);
  });

  it('sends connects and disconnects with the fields that order them', () => {
    const connected = rule('device_link_connected');
    assert.deepEqual(connected.from, ['$events/client_connected']);
    const connectedFields = connected.columns.map((column) => column.alias);
    for (const field of ['event', 'clientid', 'username', 'connected_at', 'peername', 'proto_ver']) assert.ok(connectedFields.includes(field), field);
    const disconnected = rule('device_link_disconnected');
    assert.deepEqual(disconnected.from, ['$events/client_disconnected']);
    const disconnectedFields = disconnected.columns.map((column) => column.alias);
    for (const field of ['event', 'clientid', 'connected_at', 'disconnected_at', 'reason']) assert.ok(disconnectedFields.includes(field), field);
  });

  it('sends the command delivery events for command topics only, with what the service finds a command by', () => {
    const cases: Array<[string, string, string[]]> = [
      ['device_link_command_delivered', '$events/message_delivered', ['event', 'id', 'clientid', 'topic', 'pub_props']],
      ['device_link_command_acked', '$events/message_acked', ['event', 'id', 'clientid', 'topic', 'pub_props']],
      ['device_link_command_delivery_dropped', '$events/delivery_dropped', ['event', 'id', 'clientid', 'topic', 'pub_props', 'reason']],
      ['device_link_command_dropped', '$events/message_dropped', ['event', 'id', 'topic', 'pub_props', 'reason']],
      ['device_link_command_subscribed', '$events/session_subscribed', ['event', 'clientid', 'topic']],
    ];
    for (const [id, from, fields] of cases) {
      const parsed = rule(id);
      assert.deepEqual(parsed.from, [from], id);
      assert.deepEqual(parsed.where, { column: 'topic', filter: 'devices/+/commands' }, `${id} selects command topics only`);
      const selected = parsed.columns.map((column) => column.alias);
      for (const field of fields) assert.ok(selected.includes(field), `${id} selects ${field}`);
      assert.notEqual(hoconAt(rules, `${id}.enable`), false, `${id} is enabled`);
    }
    const event = rule('device_link_command_delivered');
    assert.equal(ruleSelects(event, { event: 'message.delivered', topic: 'devices/d/telemetry' }), false);
    assert.equal(ruleSelects(event, { event: 'message.delivered', topic: 'devices/d/commands' }), true);
  });

  it('ships the command replies rule disabled, sending the publish as event command.reply', () => {
    assert.equal(hoconAt(rules, 'device_link_command_replies.enable'), false, 'off like COMMAND_REPLIES, until both are enabled');
    const replies = rule('device_link_command_replies');
    assert.deepEqual(replies.from, ['devices/+/command-replies']);
    const output = selectOutput(replies, {
      event: 'message.publish',
      id: '0A',
      clientid: 'd',
      username: 'd',
      topic: 'devices/d/command-replies',
      payload: Buffer.from('{"command_id":"c","status":"ok"}'),
      publish_received_at: 1,
      timestamp: 2,
    });
    assert.equal(output.event, 'command.reply', 'not message.publish, which is telemetry');
    assert.equal((JSON.parse(encodeRuleOutput(output)) as { payload: string }).payload, '{"command_id":"c","status":"ok"}', 'the reply as text');
    assert.equal(ruleSelects(replies, { event: 'message.publish', topic: 'devices/d/telemetry' }), false);
    assert.equal(ruleSelects(rule('device_link_telemetry'), { event: 'message.publish', topic: 'devices/d/command-replies' }), false);
  });

  it('selects in every rule only columns EMQX 5.8 gives the events it selects', () => {
    type Expression = RuleSql['columns'][number]['expression'];
    const columnsOf = (expression: Expression): string[] =>
      expression.kind === 'column' ? [expression.name] : expression.kind === 'call' ? columnsOf(expression.argument) : [];
    for (const id of Object.keys(rules)) {
      const parsed = rule(id);
      for (const source of parsed.from) {
        const event = (source.startsWith('$events/') ? eventOfTopic(source) : 'message.publish') as EventName | undefined;
        assert.ok(event, `${id}: ${source} is an event the facts know`);
        const known = new Set<string>([...BASIC_COLUMNS, ...EVENT_COLUMNS[event], RULE_METADATA_COLUMN]);
        const used = [...parsed.columns.flatMap((column) => columnsOf(column.expression)), ...(parsed.where ? [parsed.where.column] : [])];
        for (const column of used) assert.ok(known.has(column), `${id} selects ${column}, which ${event} does not have`);
      }
    }
  });

  it('posts every rule output whole to /emqx/events and keeps retrying far longer than 45 s', () => {
    for (const [id, value] of Object.entries(rules)) {
      const actions = hoconAt(value, 'actions');
      assert.deepEqual(actions, ['http:device_link_events'], `rule ${id}`);
    }
    const action = hoconObject(template, 'actions.http.device_link_events');
    assert.equal(hoconAt(action, 'parameters.body'), undefined, 'no body template: EMQX sends the whole SELECT output');
    const options = hoconObject(action, 'resource_opts');
    assert.ok(durationMs(options.request_ttl) >= 5 * 60_000, 'request_ttl of several minutes instead of 45 s');
    assert.equal(options.query_mode, 'async');
    // The buffer (in memory, per buffer worker) is what a node keeps while
    // the service is away: bounded, and as the comment above it says, about
    // ten minutes of 850 small events a second.
    const buffer = Number(options.worker_pool_size) * bytes(options.max_buffer_bytes);
    assert.equal(buffer, 512 * 1024 * 1024, 'worker_pool_size x max_buffer_bytes = 512 MB per node');
    const smallEventBytes = 1024;
    const eventsPerSecond = buffer / smallEventBytes / (durationMs(options.request_ttl) / 1000);
    assert.ok(eventsPerSecond >= 850 && eventsPerSecond < 900, `${eventsPerSecond} events/s for the whole request_ttl`);
    const comment = readFileSync(EMQX_TEMPLATE, 'utf8').split('actions.http.device_link_events {')[0]?.split('\n\n').at(-1) ?? '';
    assert.match(comment, /8 x 64MB = 512 MB per EMQX node/);
    assert.match(comment, /about 850 events a second per node/);
    const request = renderHttpAction(template, 'http:device_link_events', { event: 'client.connected', clientid: 'c', reason: undefined });
    assert.equal(request.method, 'POST');
    assert.equal(request.url, '/emqx/events');
    assert.equal(request.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(request.body), { event: 'client.connected', clientid: 'c', reason: 'undefined' });
  });

  it('sends all three kinds of request to the same service', () => {
    const hosts = [
      new URL(hoconString(template, 'authentication.0.url')).host,
      new URL(hoconString(template, 'authorization.sources.0.url')).host,
      new URL(hoconString(template, 'connectors.http.device_link.url')).host,
    ];
    assert.deepEqual(new Set(hosts), new Set(['device-link:8080']));
  });

  it('listens on 1883 and on 8883 with TLS, and bootstraps the API key from the file the entrypoint writes', () => {
    assert.equal(hoconAt(template, 'listeners.tcp.default.bind'), '0.0.0.0:1883');
    assert.equal(hoconAt(template, 'listeners.ssl.default.bind'), '0.0.0.0:8883');
    const ssl = hoconObject(template, 'listeners.ssl.default.ssl_options') as HoconObject;
    for (const file of ['certfile', 'keyfile', 'cacertfile']) {
      assert.match(String(ssl[file]), /^\/opt\/emqx\/etc\/device-link-certs\/[a-z]+\.(crt|key)$/, file);
    }
    const script = readFileSync(EMQX_ENTRYPOINT, 'utf8');
    const etc = /etc="\$\{DEVICE_LINK_EMQX_ETC:-([^}]+)\}"/.exec(script)?.[1];
    assert.equal(hoconAt(template, 'api_key.bootstrap_file'), `${etc}/device-link-api-keys.bootstrap`);
  });
});
