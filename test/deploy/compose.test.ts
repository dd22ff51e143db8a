import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { loadConfig, SECRET_VARIABLES } from '../../src/config.js';
import { EMQX_ENTRYPOINT, EMQX_TEMPLATE, REPO_ROOT, renderEmqxConfig } from '../../dev/emqx-sim/emqx-config.js';
import { hoconAt, hoconString, parseHocon } from '../../dev/emqx-sim/hocon.js';
import { configDocTable } from '../helpers/config-doc.js';

/**
 * `docker compose config` is not available everywhere the tests run, so the
 * compose file is checked here: its shape, the start-up order, the mounts, and
 * that the values the service and EMQX get from it agree with each other and
 * with deploy/emqx/emqx.conf.
 */

const healthcheck = z.object({ test: z.array(z.string()).min(1) });
const service = z.object({
  image: z.string().optional(),
  user: z.string().optional(),
  build: z.union([z.string(), z.object({ context: z.string() })]).optional(),
  entrypoint: z.array(z.string()).optional(),
  command: z.array(z.string()).optional(),
  environment: z.record(z.string(), z.string()).optional(),
  ports: z.array(z.string()).optional(),
  volumes: z.array(z.string()).optional(),
  healthcheck: healthcheck.optional(),
  restart: z.string().optional(),
  hostname: z.string().optional(),
  network_mode: z.string().optional(),
  networks: z.record(z.string(), z.object({ aliases: z.array(z.string()).optional() })).optional(),
  depends_on: z.record(z.string(), z.object({ condition: z.enum(['service_started', 'service_healthy', 'service_completed_successfully']) })).optional(),
});
const composeSchema = z.object({
  name: z.string(),
  services: z.record(z.string(), service),
  volumes: z.record(z.string(), z.null()),
});

const composeText = readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8');
const compose = composeSchema.parse(parseYaml(composeText));

function serviceNamed(name: string) {
  const found = compose.services[name];
  assert.ok(found, `service ${name} is defined`);
  return found;
}

const INTERPOLATION = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g;

/** Compose variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$. */
function interpolate(value: string, variables: Readonly<Record<string, string>>): string {
  return value.replace(INTERPOLATION, (match, name: string | undefined, operator: string | undefined, argument: string | undefined) => {
    if (match === '$$') return '$';
    const current = variables[name as string];
    if (operator === ':-') return current === undefined || current === '' ? (argument ?? '') : current;
    if (operator === '-') return current === undefined ? (argument ?? '') : current;
    if (operator === ':?' && (current === undefined || current === '')) throw new Error(`required variable ${name} is missing a value: ${argument}`);
    if (operator === '?' && current === undefined) throw new Error(`required variable ${name} is missing a value: ${argument}`);
    if (current === undefined) throw new Error(`\${${name}} has no default and is not set`);
    return current;
  });
}

/** Every `${NAME...}` of the compose file, with its operator and argument. */
function interpolations() {
  return [...composeText.matchAll(INTERPOLATION)]
    .filter(([match]) => match !== '$$')
    .map(([match, name, operator, argument]) => ({ match, name: name as string, operator: operator ?? '', argument: argument ?? '' }));
}

/** Runs deploy/compose-env.sh, writing `file`; its output. */
function composeEnv(file: string): string {
  return execFileSync('sh', [path.join(REPO_ROOT, 'deploy/compose-env.sh'), file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function parseDotEnv(text: string): Record<string, string> {
  const entries = text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
      assert.ok(match, `.env line ${line.slice(0, line.indexOf('=') + 1)}…`);
      return [match[1] as string, match[2] as string] as const;
    });
  return Object.fromEntries(entries);
}

const scratch = mkdtempSync(path.join(os.tmpdir(), 'dlm-compose-env-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
composeEnv(path.join(scratch, '.env'));
/** The variables deploy/compose-env.sh writes: what the stack is brought up with. */
const generated = parseDotEnv(readFileSync(path.join(scratch, '.env'), 'utf8'));

function environmentOf(name: string, variables: Readonly<Record<string, string>> = generated): Record<string, string> {
  const raw = serviceNamed(name).environment ?? {};
  return Object.fromEntries(Object.entries(raw).map(([key, value]) => [key, interpolate(value, variables)]));
}

function mounts(name: string) {
  return (serviceNamed(name).volumes ?? []).map((entry) => {
    const [source, target, mode] = entry.split(':');
    assert.ok(source && target, `volume entry ${entry}`);
    return { source, target, readOnly: mode === 'ro' };
  });
}

function mountAt(name: string, target: string) {
  const found = mounts(name).find((mount) => mount.target === target);
  assert.ok(found, `${name} mounts something at ${target}`);
  return found;
}

const template = parseHocon(readFileSync(EMQX_TEMPLATE, 'utf8'));
const entrypointScript = readFileSync(EMQX_ENTRYPOINT, 'utf8');
const scriptDefault = (variable: string) => {
  const found = new RegExp(`\\$\\{${variable}:-([^}]+)\\}`).exec(entrypointScript)?.[1];
  assert.ok(found, `the entrypoint has a default for ${variable}`);
  return found;
};

describe('docker-compose.yml', () => {
  it('brings up EMQX 5.8, Redpanda, Postgres, Redis and the service', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['device-link', 'emqx', 'emqx-certs', 'postgres', 'redis', 'redpanda']);
    assert.match(serviceNamed('emqx').image ?? '', /^emqx\/emqx:5\.8\.\d+$/);
    assert.ok(serviceNamed('device-link').build, 'the service is built from the Dockerfile');
    assert.ok(existsSync(path.join(REPO_ROOT, 'Dockerfile')));
  });

  it('checks the health of every long-running service and starts them in order', () => {
    for (const name of ['postgres', 'redis', 'redpanda', 'device-link', 'emqx']) {
      assert.ok(serviceNamed(name).healthcheck, `${name} has a health check`);
      assert.equal(serviceNamed(name).restart, 'unless-stopped', `${name} restarts after a crash`);
    }
    assert.equal(serviceNamed('emqx-certs').restart, 'no', 'the certificate job runs once');
    assert.deepEqual(serviceNamed('device-link').depends_on, {
      postgres: { condition: 'service_healthy' },
      redis: { condition: 'service_healthy' },
      redpanda: { condition: 'service_healthy' },
    });
    // EMQX lets devices in only once the service answers for them.
    assert.deepEqual(serviceNamed('emqx').depends_on, {
      'device-link': { condition: 'service_healthy' },
      'emqx-certs': { condition: 'service_completed_successfully' },
    });
    const readiness = serviceNamed('device-link').healthcheck?.test.join(' ') ?? '';
    assert.match(readiness, /\/readyz/, 'the service is healthy when its dependencies answer');
  });

  it('migrates before the service listens', () => {
    assert.equal(loadConfig(environmentOf('device-link')).postgres.migrateOnStart, true);
    const main = readFileSync(path.join(REPO_ROOT, 'src/main.ts'), 'utf8');
    const migrates = main.indexOf('await migrateDatabase(');
    const listens = main.indexOf('await listen(');
    assert.ok(migrates >= 0 && listens >= 0, 'src/main.ts migrates and listens');
    assert.ok(migrates < listens, 'src/main.ts migrates, then listens');
  });

  it('publishes the MQTT, TLS and service ports, and the EMQX dashboard and REST API on loopback only', () => {
    assert.deepEqual(serviceNamed('emqx').ports, ['1883:1883', '8883:8883', '127.0.0.1:18083:18083']);
    assert.deepEqual(serviceNamed('device-link').ports, ['8080:8080']);
  });

  it('gives the EMQX dashboard admin a required password of its own, never the default', () => {
    const raw = serviceNamed('emqx').environment?.EMQX_DASHBOARD__DEFAULT_PASSWORD ?? '';
    assert.match(raw, /^\$\{EMQX_DASHBOARD_PASSWORD:\?[^}]+\}$/, 'EMQX 5.8 creates the admin user with this password');
    const password = environmentOf('emqx').EMQX_DASHBOARD__DEFAULT_PASSWORD ?? '';
    assert.equal(password, generated.EMQX_DASHBOARD_PASSWORD);
    assert.notEqual(password, 'public');
    // EMQX refuses dashboard passwords outside 8 to 64 characters.
    assert.ok(password.length >= 8 && password.length <= 64, `${password.length} characters`);
  });

  it('protects Redis with a required password, which the service\'s URL and the health check use', () => {
    const redis = serviceNamed('redis');
    const command = redis.command ?? [];
    const flag = command.indexOf('--requirepass');
    assert.ok(flag > 0, 'redis-server is started with --requirepass');
    assert.match(command[flag + 1] ?? '', /^\$\{REDIS_PASSWORD:\?[^}]+\}$/);
    const password = interpolate(command[flag + 1] ?? '', generated);
    assert.equal(password, generated.REDIS_PASSWORD);

    const { topology, password: servicePassword } = loadConfig(environmentOf('device-link')).redis;
    assert.equal(servicePassword, password, 'the service authenticates');
    assert.equal(topology.kind === 'single' && new URL(topology.url).hostname, 'redis');
    // The health check authenticates through REDISCLI_AUTH, so the password is not on its command line.
    assert.equal(environmentOf('redis').REDISCLI_AUTH, password);
    const check = redis.healthcheck?.test.join(' ') ?? '';
    assert.match(check, /redis-cli/);
    assert.match(check, /PONG/, 'only an authenticated PING passes: redis-cli exits 0 on an error reply');
    assert.doesNotMatch(check, /REDIS_PASSWORD|-a /);
  });

  it('mounts files that exist and volumes that are declared', () => {
    for (const [name, definition] of Object.entries(compose.services)) {
      for (const mount of mounts(name)) {
        if (mount.source.startsWith('./')) {
          assert.ok(existsSync(path.join(REPO_ROOT, mount.source)), `${name}: ${mount.source} exists`);
          assert.ok(mount.readOnly, `${name}: ${mount.source} is mounted read-only`);
        } else {
          assert.ok(mount.source in compose.volumes, `${name}: volume ${mount.source} is declared`);
        }
      }
      assert.ok(definition.image || definition.build, `${name} has an image`);
    }
  });

  it('starts EMQX through the entrypoint that renders the mounted configuration', () => {
    const emqx = serviceNamed('emqx');
    const entrypoint = mountAt('emqx', '/opt/device-link/docker-entrypoint.sh');
    assert.equal(entrypoint.source, './deploy/emqx/docker-entrypoint.sh');
    assert.deepEqual(emqx.entrypoint, ['/bin/sh', entrypoint.target]);
    assert.deepEqual(emqx.command, ['/usr/bin/docker-entrypoint.sh', '/opt/emqx/bin/emqx', 'foreground']);
    const configuration = mountAt('emqx', scriptDefault('DEVICE_LINK_EMQX_TEMPLATE'));
    assert.equal(configuration.source, './deploy/emqx/emqx.conf');
    assert.equal(scriptDefault('DEVICE_LINK_EMQX_ETC'), '/opt/emqx/etc');
  });

  it('gives EMQX the certificates its TLS listener reads', () => {
    const directories = ['certfile', 'keyfile', 'cacertfile'].map((file) => path.posix.dirname(hoconString(template, `listeners.ssl.default.ssl_options.${file}`)));
    assert.equal(new Set(directories).size, 1);
    const certificates = mountAt('emqx', directories[0] as string);
    assert.ok(certificates.readOnly);
    const generated = mounts('emqx-certs').find((mount) => mount.source === certificates.source);
    assert.ok(generated, 'the certificate job writes into the volume EMQX reads');
    const job = serviceNamed('emqx-certs').command?.join(' ') ?? '';
    assert.ok(job.endsWith(`dev-certs.sh ${generated.target}`), 'the job writes where the volume is mounted');
    assert.equal(mountAt('emqx-certs', '/opt/device-link/dev-certs.sh').source, './deploy/emqx/dev-certs.sh');
    assert.equal(environmentOf('emqx-certs').DEV_CERTS_OWNER, '1000:1000');
  });

  it('makes the certificates with an image that already has openssl, fetching nothing at start-up', () => {
    const job = serviceNamed('emqx-certs');
    // EMQX's image: pulled for the emqx service anyway, and its ca-certificates package depends on openssl.
    assert.equal(job.image, serviceNamed('emqx').image);
    const startUp = [...(job.entrypoint ?? []), ...(job.command ?? [])].join(' ');
    assert.doesNotMatch(startUp, /\b(apk|apt-get|apt|yum|dnf|curl|wget|pip|npm)\b/, 'no package or download at start-up');
    assert.deepEqual(job.entrypoint, ['/bin/sh'], 'the image\'s own entrypoint (EMQX start-up) is not run');
    assert.equal(job.user, '0:0', 'root writes the fresh volume and hands the files to EMQX\'s user');
    assert.equal(job.network_mode, 'none', 'the job has no network to fetch anything over');
    assert.equal(job.networks, undefined);
  });

  it('runs Redpanda with production-like flags, not in developer mode', () => {
    const command = serviceNamed('redpanda').command ?? [];
    assert.deepEqual(command.slice(0, 2), ['redpanda', 'start']);
    assert.ok(!command.some((argument) => argument.startsWith('--mode')), 'no --mode=dev-container');
    const settings = command.flatMap((argument, index) => (command[index - 1] === '--set' ? [argument] : []));
    assert.ok(settings.includes('redpanda.developer_mode=false'), 'developer mode off even where the image\'s configuration turns it on');
    assert.ok(settings.includes('redpanda.auto_create_topics_enabled=false'), 'the service creates its topics; a typo does not create one');
    assert.ok(command.includes('--unsafe-bypass-fsync=false'), 'every write is fsynced');
    // The comment above the service says when dev-container mode is acceptable.
    const comment = composeText.slice(0, composeText.indexOf('\n  redpanda:'));
    assert.match(comment.slice(comment.lastIndexOf('\n\n')), /dev-container[\s\S]*laptop only/);
  });

  it('gives the service and EMQX the same hook token and REST API key, whatever the shell sets', async () => {
    const shells: Array<Record<string, string>> = [
      generated,
      { ...generated, EMQX_HOOK_TOKEN: 'shell-hook-token-0123456789', EMQX_API_KEY: 'ops', EMQX_API_SECRET: 'shell-secret-0123' },
    ];
    for (const variables of shells) {
      const service = environmentOf('device-link', variables);
      const emqx = environmentOf('emqx', variables);
      assert.equal(emqx.DEVICE_LINK_HOOK_TOKEN, service.EMQX_HOOK_TOKEN);
      assert.equal(emqx.DEVICE_LINK_API_KEY, service.EMQX_API_KEY);
      assert.equal(emqx.DEVICE_LINK_API_SECRET, service.EMQX_API_SECRET);
      // The values pass both the entrypoint's and the service's checks.
      const rendered = await renderEmqxConfig(emqx);
      assert.equal(hoconString(rendered.config, 'authentication.0.headers.authorization'), `Bearer ${service.EMQX_HOOK_TOKEN}`);
      assert.equal(rendered.apiKeys, `${service.EMQX_API_KEY}:${service.EMQX_API_SECRET}:administrator\n`);
      assert.deepEqual(loadConfig(service).emqx.hookTokens, [service.EMQX_HOOK_TOKEN]);
    }
  });

  it('sets EMQX only through its node and dashboard settings and names nothing else EMQX_*', () => {
    // EMQX reads every EMQX_* variable as a configuration override.
    const names = Object.keys(serviceNamed('emqx').environment ?? {}).filter((name) => name.startsWith('EMQX_'));
    assert.deepEqual(names.sort(), ['EMQX_DASHBOARD__DEFAULT_PASSWORD', 'EMQX_NODE__COOKIE', 'EMQX_NODE__NAME']);
  });

  it('names the EMQX node after a dotted host name that resolves to the node itself', () => {
    const emqx = serviceNamed('emqx');
    const [name, host] = (environmentOf('emqx').EMQX_NODE__NAME ?? '').split('@');
    assert.equal(name, 'emqx');
    // EMQX's nodes use long names: the host part must be a dotted name.
    assert.match(host ?? '', /^[a-z0-9-]+(\.[a-z0-9-]+)+$/);
    assert.equal(emqx.hostname, host, 'the container resolves its own node name');
    assert.deepEqual(emqx.networks?.default?.aliases, [host], 'and so does the compose network');
  });

  it('points the service and EMQX at each other and at the dependencies as they are defined', () => {
    const env = environmentOf('device-link');
    const config = loadConfig(env);
    for (const url of [
      hoconString(template, 'authentication.0.url'),
      hoconString(template, 'authorization.sources.0.url'),
      hoconString(template, 'connectors.http.device_link.url'),
    ]) {
      assert.equal(new URL(url).host, `device-link:${config.http.port}`, url);
    }
    assert.equal(config.emqx.apiUrl, `http://emqx:${String(hoconAt(template, 'dashboard.listeners.http.bind'))}`);
    const postgres = environmentOf('postgres');
    const database = new URL(config.postgres.url);
    assert.equal(database.host, 'postgres:5432');
    assert.equal(database.username, postgres.POSTGRES_USER);
    assert.equal(database.password, postgres.POSTGRES_PASSWORD);
    assert.equal(database.pathname, `/${postgres.POSTGRES_DB}`);
    assert.equal(config.redis.topology.kind === 'single' && new URL(config.redis.topology.url).hostname, 'redis');
    const redpanda = serviceNamed('redpanda').command?.join(' ') ?? '';
    for (const broker of config.kafka.brokers) assert.ok(redpanda.includes(`internal://${broker}`), `redpanda advertises ${broker}`);
  });

  it('has no default for any secret: each is required, and deploy/compose-env.sh generates each', () => {
    assert.doesNotMatch(composeText, /change-me/i, 'no published example value is left in the file');
    const used = interpolations();
    assert.ok(used.length > 0);
    for (const { match, operator, argument } of used) {
      // Every variable the file reads is a secret: none may fall back to a value written here.
      assert.equal(operator, ':?', `${match} is required`);
      assert.match(argument, /deploy\/compose-env\.sh/, `${match} says how to generate it`);
    }
    assert.deepEqual(Object.keys(generated).sort(), [...new Set(used.map((use) => use.name))].sort(), 'the script writes exactly the variables the file requires');
    for (const name of ['device-link', 'emqx', 'postgres', 'redis']) {
      assert.throws(() => environmentOf(name, {}), /required variable/, `${name} does not start without its secrets`);
    }
    // Every secret the service takes comes from one of those variables, the
    // connection URLs' passwords included.
    const raw = serviceNamed('device-link').environment ?? {};
    for (const name of SECRET_VARIABLES) {
      if (raw[name] !== undefined) assert.match(raw[name], /\$\{[A-Z_]+:\?/, `${name} comes from a required variable`);
    }
    // What the script generates passes the service's own checks (no example value, lengths).
    const service = environmentOf('device-link');
    assert.equal(loadConfig(service).admin.rootToken, generated.ADMIN_TOKEN);
    for (const value of Object.values(generated)) assert.match(value, /^[0-9a-f]{16,}$/);
  });

  it('generates the .env once, readable by its owner only, and never changes it', () => {
    const file = path.join(scratch, 'again.env');
    assert.match(composeEnv(file), /wrote random secrets/);
    const first = readFileSync(file, 'utf8');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.notDeepEqual(parseDotEnv(first), generated, 'fresh values every time a file is written');
    assert.match(composeEnv(file), /left unchanged/);
    assert.equal(readFileSync(file, 'utf8'), first);
    const gitignore = readFileSync(path.join(REPO_ROOT, '.gitignore'), 'utf8').split('\n');
    assert.ok(gitignore.includes('.env') || gitignore.includes('/.env'), '.env is git-ignored');
  });

  it('refuses to complete an .env that lacks a secret, rather than guess', () => {
    const file = path.join(scratch, 'partial.env');
    composeEnv(file);
    const partial = readFileSync(file, 'utf8').replace(/^ADMIN_TOKEN=.*\n/m, '');
    execFileSync('sh', ['-c', 'cat > "$1"', 'sh', file], { input: partial });
    assert.throws(() => composeEnv(file), (error: { status?: number; stderr?: string }) => error.status === 1 && /lacks: ADMIN_TOKEN/.test(String(error.stderr)));
    assert.equal(readFileSync(file, 'utf8'), partial);
  });

  it('sets only variables the service documents', () => {
    const documented = new Set(configDocTable().map((row) => row.name));
    for (const name of Object.keys(serviceNamed('device-link').environment ?? {})) {
      assert.ok(documented.has(name), `${name} is in the configuration table (docs/configuration.md)`);
    }
  });
});
