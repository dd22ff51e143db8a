import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Ajv, type AnySchemaObject } from 'ajv';
import type { IContainer, IPodSpec } from 'kubernetes-models/v1';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Job, type IJob } from 'kubernetes-models/batch/v1/Job';
import { NetworkPolicy, type INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { parseAllDocuments } from 'yaml';
import { loadConfig, SECRET_VARIABLES } from '../../src/config.js';
import { REPO_ROOT, renderEmqxConfig } from '../../dev/emqx-sim/emqx-config.js';
import { hoconAt, hoconObject, hoconString, parseHocon, type HoconObject } from '../../dev/emqx-sim/hocon.js';
import { configDocTable } from '../helpers/config-doc.js';

/**
 * deploy/kubernetes/ as kubectl's kustomize renders it: the base, the EMQX
 * custom resource and the example overlay. Every object is checked against
 * Kubernetes' own schemas (kubernetes-models, generated from Kubernetes'
 * OpenAPI) and the EMQX custom resource against the EMQX Operator's CRD
 * schema; then what the schemas cannot say: the settings the service gets,
 * how it starts and stops, who may reach it, and that EMQX's settings in the
 * custom resource are those of deploy/emqx/emqx.conf.
 */

const KUSTOMIZE_ROOT = path.join(REPO_ROOT, 'deploy/kubernetes');
const CRD_SCHEMA = path.join(REPO_ROOT, 'test/deploy/fixtures/emqx-operator-2.2.29-emqx-v2beta1.schema.json');

/** kubectl with kustomize v5: the machine's, or the one scripts/kubectl.sh fetches once. Never skipped. */
function findKubectl(): string {
  const found = spawnSync('bash', [path.join(REPO_ROOT, 'scripts/kubectl.sh')], { encoding: 'utf8' });
  if (found.status !== 0) {
    throw new Error(`no kubectl with kustomize v5, and scripts/kubectl.sh could not fetch one:\n${found.stderr}\nInstall kubectl 1.27 or later, or run bash .ci/run, which fetches it.`);
  }
  return path.join(found.stdout.trim(), 'kubectl');
}

const kubectl = findKubectl();

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

function render(dir: string): KubeObject[] {
  const output = execFileSync(kubectl, ['kustomize', path.join(KUSTOMIZE_ROOT, dir)], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(output).map((document) => document.toJS() as KubeObject);
}

const rendered = { base: render('base'), emqx: render('emqx'), overlay: render('overlays/example') };

// --- schemas ---------------------------------------------------------------

/** Each kind the manifests use, checked with kubernetes-models (which throws what is wrong). */
const builtIn: Record<string, (object: KubeObject) => void> = {
  'v1/Namespace': (object) => new Namespace(object as never).validate(),
  'v1/ServiceAccount': (object) => new ServiceAccount(object as never).validate(),
  'v1/ConfigMap': (object) => new ConfigMap(object as never).validate(),
  'v1/Service': (object) => new Service(object as never).validate(),
  'apps/v1/Deployment': (object) => new Deployment(object as never).validate(),
  'batch/v1/Job': (object) => new Job(object as never).validate(),
  'policy/v1/PodDisruptionBudget': (object) => new PodDisruptionBudget(object as never).validate(),
  'autoscaling/v2/HorizontalPodAutoscaler': (object) => new HorizontalPodAutoscaler(object as never).validate(),
  'networking.k8s.io/v1/NetworkPolicy': (object) => new NetworkPolicy(object as never).validate(),
};

/**
 * The CRD's structural schema with unknown fields refused, as the API server
 * refuses them under kubectl's strict field validation (its default).
 */
function strictStructural(schema: AnySchemaObject): AnySchemaObject {
  const copy: AnySchemaObject = { ...schema };
  if (copy.properties && copy.additionalProperties === undefined && !copy['x-kubernetes-preserve-unknown-fields']) copy.additionalProperties = false;
  if (copy.properties) copy.properties = Object.fromEntries(Object.entries(copy.properties as Record<string, AnySchemaObject>).map(([key, value]) => [key, strictStructural(value)]));
  if (copy.items) copy.items = strictStructural(copy.items as AnySchemaObject);
  if (copy.additionalProperties && typeof copy.additionalProperties === 'object') copy.additionalProperties = strictStructural(copy.additionalProperties as AnySchemaObject);
  return copy;
}

const crd = JSON.parse(readFileSync(CRD_SCHEMA, 'utf8')) as { group: string; kind: string; version: string; openAPIV3Schema: AnySchemaObject };
// Kubernetes' patterns are Go regular expressions, which JavaScript reads without the u flag.
// An int-or-string field has a pattern without a type, which Kubernetes allows.
const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, unicodeRegExp: false });
for (const keyword of ['x-kubernetes-int-or-string', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys', 'x-kubernetes-map-type', 'x-kubernetes-validations', 'x-kubernetes-preserve-unknown-fields']) {
  ajv.addKeyword(keyword);
}
ajv.addFormat('int32', { type: 'number', validate: (value: number) => Number.isInteger(value) && Math.abs(value) < 2 ** 31 });
ajv.addFormat('int64', { type: 'number', validate: (value: number) => Number.isSafeInteger(value) });
ajv.addFormat('date-time', (value: string) => !Number.isNaN(Date.parse(value)));
const validateEmqx = ajv.compile(strictStructural(crd.openAPIV3Schema));

function validate(object: KubeObject): void {
  if (object.apiVersion === `${crd.group}/${crd.version}` && object.kind === crd.kind) {
    assert.ok(validateEmqx(object), `${object.kind} ${object.metadata.name}: ${ajv.errorsText(validateEmqx.errors)}`);
    return;
  }
  const check = builtIn[`${object.apiVersion}/${object.kind}`];
  assert.ok(check, `${object.apiVersion} ${object.kind} is a kind this test validates`);
  check(object);
}

// --- lookups ----------------------------------------------------------------

function find<T>(objects: KubeObject[], kind: string, name?: string): T & KubeObject {
  const found = objects.filter((object) => object.kind === kind && (name === undefined || object.metadata.name === name));
  assert.equal(found.length, 1, `one ${kind}${name ? ` ${name}` : ''}`);
  return found[0] as T & KubeObject;
}

interface EmqxResource extends KubeObject {
  spec: {
    image: string;
    bootstrapAPIKeys: Array<{ secretRef: { key: { secretName: string; secretKey: string }; secret: { secretName: string; secretKey: string } } }>;
    config: { mode?: string; data: string };
    coreTemplate: {
      spec: Pick<IPodSpec, 'topologySpreadConstraints'> & {
        replicas: number;
        podSecurityContext: NonNullable<IPodSpec['securityContext']>;
        containerSecurityContext: NonNullable<IContainer['securityContext']>;
        resources: IContainer['resources'];
        initContainers: IContainer[];
        extraVolumes: NonNullable<IPodSpec['volumes']>;
        extraVolumeMounts: NonNullable<IContainer['volumeMounts']>;
      };
    };
  };
}

function container(spec: IPodSpec | undefined, name?: string): IContainer {
  const found = (spec?.containers ?? []).filter((entry) => name === undefined || entry.name === name);
  assert.equal(found.length, 1);
  return found[0] as IContainer;
}

function configMapData(objects: KubeObject[]): Record<string, string> {
  return find<IConfigMap>(objects, 'ConfigMap').data ?? {};
}

/** The environment Kubernetes gives a container: its ConfigMaps, then its own variables, the optional secret keys given as `optional`. */
function environmentOf(objects: KubeObject[], spec: IContainer, secrets: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of spec.envFrom ?? []) {
    assert.ok(source.configMapRef, 'environment from ConfigMaps only');
    const configMap = find<IConfigMap>(objects, 'ConfigMap', source.configMapRef.name);
    Object.assign(env, configMap.data);
  }
  for (const variable of spec.env ?? []) {
    const ref = variable.valueFrom?.secretKeyRef;
    if (ref) {
      const value = secrets[ref.key];
      if (value !== undefined) env[variable.name] = value;
      else assert.equal(ref.optional, true, `${variable.name}: a Secret key the pod needs is optional only where the service can do without it`);
    } else {
      env[variable.name] = variable.value ?? '';
    }
  }
  return env;
}

/** The files a container sees from its Secret volumes: path -> Secret key. */
function secretFiles(spec: IPodSpec, main: IContainer): Map<string, { secret: string; key: string }> {
  const files = new Map<string, { secret: string; key: string }>();
  for (const mount of main.volumeMounts ?? []) {
    const volume = (spec.volumes ?? []).find((entry) => entry.name === mount.name);
    if (!volume?.secret) continue;
    assert.equal(mount.readOnly, true, `${mount.name} is mounted read-only`);
    for (const item of volume.secret.items ?? []) files.set(path.posix.join(mount.mountPath, item.path), { secret: volume.secret.secretName ?? '', key: item.key });
  }
  return files;
}

/** What the Pod Security Standard "restricted" asks of a pod, the checks that matter here. */
function assertRestricted(label: string, pod: NonNullable<IPodSpec['securityContext']>, containers: IContainer[]): void {
  assert.equal(pod.runAsNonRoot, true, `${label}: runs as non-root`);
  assert.notEqual(pod.runAsUser, 0, `${label}: not as uid 0`);
  for (const entry of containers) {
    const context: NonNullable<IContainer['securityContext']> = entry.securityContext ?? {};
    assert.equal(context.allowPrivilegeEscalation, false, `${label} ${entry.name}: no privilege escalation`);
    assert.deepEqual(context.capabilities?.drop, ['ALL'], `${label} ${entry.name}: drops every capability`);
    assert.notEqual(context.privileged, true, `${label} ${entry.name}`);
    assert.notEqual(context.runAsUser, 0, `${label} ${entry.name}`);
    assert.equal((context.seccompProfile ?? pod.seccompProfile)?.type, 'RuntimeDefault', `${label} ${entry.name}: seccomp RuntimeDefault`);
  }
}

const FAKE_SECRETS: Readonly<Record<string, string>> = {
  DATABASE_URL: 'postgres://devicelink:pw@postgres:5432/devicelink',
  REDIS_URL: 'redis://:pw@redis:6379/0',
  ADMIN_TOKEN: 'k8s-admin-token-0123456789',
  EMQX_HOOK_TOKEN: 'k8s-hook-token-0123456789',
  EMQX_API_KEY: 'device-link',
  EMQX_API_SECRET: 'k8s-api-secret-0123456789',
  CREDENTIAL_CACHE_SECRET: 'k8s-cache-secret-0123456789',
  KEY_DIGEST_SECRET: 'k8s-key-digest-secret-0123456789abcdef',
  KAFKA_SASL_PASSWORD: 'k8s-sasl-password',
};

// --- the tests --------------------------------------------------------------

describe('deploy/kubernetes rendered by kustomize', () => {
  it('renders the base, the EMQX resource and the example overlay into objects that pass their schemas', () => {
    for (const [name, objects] of Object.entries(rendered)) {
      assert.ok(objects.length > 0, name);
      for (const object of objects) validate(object);
    }
    const kinds = (objects: KubeObject[]) => objects.map((object) => object.kind).sort();
    assert.deepEqual(kinds(rendered.base), ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Job', 'NetworkPolicy', 'PodDisruptionBudget', 'Service', 'ServiceAccount']);
    assert.deepEqual(kinds(rendered.emqx), ['EMQX']);
    assert.deepEqual(kinds(rendered.overlay), [...kinds(rendered.base), 'EMQX', 'Namespace'].sort());
    for (const object of rendered.overlay.filter((entry) => entry.kind !== 'Namespace')) assert.equal(object.metadata.namespace, 'device-link', `${object.kind} ${object.metadata.name}`);
  });

  it('catches what a schema refuses', () => {
    const deployment = structuredClone(find<IDeployment>(rendered.base, 'Deployment'));
    (container(deployment.spec?.template.spec).ports?.[0] as { containerPort: unknown }).containerPort = 'http';
    assert.throws(() => validate(deployment));
    const emqx = structuredClone(find<EmqxResource>(rendered.emqx, 'EMQX'));
    (emqx.spec as unknown as Record<string, unknown>).coreTemplates = {};
    assert.throws(() => validate(emqx), /additional properties/);
  });
});

describe('the service on Kubernetes (deploy/kubernetes/base)', () => {
  const objects = rendered.overlay;
  const deployment = find<IDeployment>(objects, 'Deployment', 'device-link');
  const pod = deployment.spec?.template.spec as IPodSpec;
  const main = container(pod, 'device-link');
  const podLabels = deployment.spec?.template.metadata?.labels ?? {};
  const settings = configMapData(objects);
  const port = (name: string) => (main.ports ?? []).find((entry) => entry.name === name)?.containerPort;
  const selects = (selector: Record<string, string> | undefined, labels: Record<string, string>) =>
    selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels[key] === value);

  it('takes every setting of docs/configuration.md from the ConfigMap, and every secret from the Secret', () => {
    const documented = configDocTable().map((row) => row.name);
    const secrets = new Set<string>(SECRET_VARIABLES);
    const files = secretFiles(pod, main);
    for (const name of documented) {
      if (!secrets.has(name)) {
        assert.ok(name in settings, `${name} is in the ConfigMap (deploy/kubernetes/base/config.env)`);
        continue;
      }
      assert.ok(!(name in settings), `the secret ${name} is not in the ConfigMap`);
      const variables = (main.env ?? []).filter((variable) => variable.name === name || variable.name === `${name}_FILE`);
      assert.equal(variables.length, 1, `${name}: from the Secret, one way`);
      const [variable] = variables as [NonNullable<IContainer['env']>[number]];
      if (variable.name === `${name}_FILE`) {
        assert.deepEqual(files.get(variable.value ?? ''), { secret: 'device-link-secrets', key: name }, `${name}_FILE names the Secret's key ${name}`);
      } else {
        assert.deepEqual(variable.valueFrom?.secretKeyRef && { name: variable.valueFrom.secretKeyRef.name, key: variable.valueFrom.secretKeyRef.key }, { name: 'device-link-secrets', key: name });
      }
    }
    for (const name of Object.keys(settings)) assert.ok(documented.includes(name), `${name} is documented`);
  });

  it('starts with those settings, which are the service\'s defaults but where config.env says why not', () => {
    const env = environmentOf(objects, main, FAKE_SECRETS);
    const files = secretFiles(pod, main);
    const readFile = (file: string) => {
      const entry = files.get(file);
      const value = entry && FAKE_SECRETS[entry.key];
      if (value === undefined) throw Object.assign(new Error(file), { code: 'ENOENT' });
      return `${value}\n`;
    };
    const config = loadConfig(env, readFile);
    assert.equal(config.credentials.keyDigestSecret, FAKE_SECRETS.KEY_DIGEST_SECRET);
    assert.equal(config.postgres.url, FAKE_SECRETS.DATABASE_URL);

    // The base alone, with the overlay's one required input.
    const base = configMapData(rendered.base);
    const required = { ...FAKE_SECRETS, KAFKA_BROKERS: 'kafka:9092' };
    delete (required as Record<string, string | undefined>).KAFKA_SASL_PASSWORD;
    const deliberate = {
      MIGRATE_ON_START: 'false',
      METRICS_PORT: '9464',
      KAFKA_TOPIC_REPLICATION_FACTOR: '3',
      ARGON2_CONCURRENCY: '1',
      EMQX_API_URL: 'http://emqx-dashboard:18083',
      SHUTDOWN_DRAIN_DELAY_MS: '5000',
    };
    assert.deepEqual(loadConfig({ ...base, ...required }), loadConfig({ ...required, ...deliberate }));
    const configEnv = readFileSync(path.join(KUSTOMIZE_ROOT, 'base/config.env'), 'utf8');
    for (const name of Object.keys(deliberate)) {
      const line = configEnv.split('\n').indexOf(`${name}=${base[name]}`);
      assert.ok(line > 0 && configEnv.split('\n')[line - 1]?.startsWith('#'), `a comment says why ${name} differs`);
    }
  });

  it('runs as a non-root user on a read-only root filesystem, with resources', () => {
    assertRestricted('Deployment', pod.securityContext ?? {}, [...(pod.initContainers ?? []), ...pod.containers]);
    assert.equal(main.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(pod.automountServiceAccountToken, false);
    assert.ok(main.resources?.requests?.cpu && main.resources.requests.memory && main.resources.limits?.memory);
    // ARGON2_CONCURRENCY follows the CPU request (one core is the event loop's).
    assert.equal(Number(settings.ARGON2_CONCURRENCY), Math.max(1, Number(main.resources.requests.cpu) - 1));
    assert.equal(deployment.spec?.replicas, undefined, 'the HorizontalPodAutoscaler owns the replica count');
  });

  it('is ready on /readyz, alive on /healthz, on the ports the ConfigMap sets', () => {
    assert.equal(port('http'), Number(settings.PORT));
    assert.equal(port('metrics'), Number(settings.METRICS_PORT));
    assert.deepEqual(main.readinessProbe?.httpGet, { path: '/readyz', port: 'http' });
    assert.deepEqual(main.livenessProbe?.httpGet, { path: '/healthz', port: 'http' });
    assert.deepEqual(main.startupProbe?.httpGet, { path: '/healthz', port: 'http' });
    // /readyz gives each dependency 1.5 s.
    assert.ok((main.readinessProbe?.timeoutSeconds ?? 1) >= 2);
  });

  it('leaves the endpoints before SIGTERM and has the time to drain after it', () => {
    // The pause is the process's own (SHUTDOWN_DRAIN_DELAY_MS): a preStop hook would pause before SIGTERM as well.
    assert.equal(main.lifecycle?.preStop, undefined, 'one pause, not two');
    const pause = Number(settings.SHUTDOWN_DRAIN_DELAY_MS) / 1000;
    assert.ok(pause >= 5 && pause <= 10, `a pre-stop pause of ${pause} s, about the time the endpoint removal takes to reach every node`);
    const drain = Number(settings.SHUTDOWN_TIMEOUT_MS) / 1000;
    assert.ok((pod.terminationGracePeriodSeconds ?? 30) > pause + drain, `terminationGracePeriodSeconds > ${pause} + ${drain}`);
    assert.equal(deployment.spec?.strategy?.rollingUpdate?.maxUnavailable, 0);
  });

  it('spreads the replicas over zones and nodes, keeps one per node during a drain, and scales them on CPU', () => {
    const spread = pod.topologySpreadConstraints ?? [];
    assert.deepEqual(spread.map((entry) => entry.topologyKey).sort(), ['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
    for (const entry of spread) assert.ok(selects(entry.labelSelector?.matchLabels, podLabels), entry.topologyKey);
    const budget = find<IPodDisruptionBudget>(objects, 'PodDisruptionBudget');
    assert.ok(selects(budget.spec?.selector?.matchLabels, podLabels));
    assert.equal(budget.spec?.maxUnavailable, 1);
    const autoscaler = find<IHorizontalPodAutoscaler>(objects, 'HorizontalPodAutoscaler');
    assert.deepEqual(autoscaler.spec?.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    assert.ok((autoscaler.spec?.minReplicas ?? 1) >= 2, 'two replicas at least, so one can stop');
    assert.equal(autoscaler.spec?.metrics?.[0]?.resource?.name, 'cpu');
  });

  it('serves the pods, and only them, on the Service', () => {
    const service = find<IService>(objects, 'Service', 'device-link');
    assert.ok(selects(service.spec?.selector, podLabels));
    const job = find<IJob>(objects, 'Job');
    assert.ok(!selects(service.spec?.selector, job.spec?.template.metadata?.labels ?? {}), 'not the migration Job');
    for (const entry of service.spec?.ports ?? []) assert.ok(port(String(entry.targetPort)), `target port ${entry.targetPort} is the container's`);
  });

  it('lets in EMQX\'s nodes and the admin clients on the HTTP port, and the monitoring namespace on the metrics port only', () => {
    const policy = find<INetworkPolicy>(objects, 'NetworkPolicy');
    assert.ok(selects(policy.spec?.podSelector?.matchLabels, podLabels));
    assert.deepEqual(policy.spec?.policyTypes, ['Ingress']);
    const rules = policy.spec?.ingress ?? [];
    const emqx = find<EmqxResource>(objects, 'EMQX');
    // The labels the EMQX Operator gives the pods of a custom resource.
    const emqxPod = { 'apps.emqx.io/instance': emqx.metadata.name, 'apps.emqx.io/managed-by': 'emqx-operator', 'apps.emqx.io/db-role': 'core' };
    const http = rules.find((rule) => rule.ports?.map((entry) => entry.port).join() === 'http');
    assert.ok(http?.from?.some((peer) => peer.namespaceSelector === undefined && selects(peer.podSelector?.matchLabels, emqxPod)), 'EMQX pods of this namespace');
    const metrics = rules.find((rule) => rule.ports?.map((entry) => entry.port).join() === 'metrics');
    assert.deepEqual(metrics?.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    assert.equal(rules.length, 2);
  });

  it('migrates with a Job that runs the image\'s node dist/cli/migrate.js against the same database', () => {
    const job = find<IJob>(objects, 'Job', 'device-link-migrate');
    const spec = job.spec?.template.spec as IPodSpec;
    const migrate = container(spec);
    assert.equal(migrate.image, main.image);
    assert.deepEqual(migrate.command, ['node', 'dist/cli/migrate.js']);
    assert.equal(spec.restartPolicy, 'Never');
    const url = (migrate.env ?? []).find((variable) => variable.name === 'DATABASE_URL_FILE')?.value ?? '';
    assert.deepEqual(secretFiles(spec, migrate).get(url), { secret: 'device-link-secrets', key: 'DATABASE_URL' });
    assertRestricted('Job', spec.securityContext ?? {}, spec.containers);
    assert.equal(migrate.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(settings.MIGRATE_ON_START, 'false', 'the Deployment leaves migrating to the Job');
    assert.equal(job.metadata.labels?.['app.kubernetes.io/component'], 'migration', 'so it can be applied first by its label');
  });

  it('sets the image in the overlay', () => {
    assert.equal(container(find<IDeployment>(rendered.base, 'Deployment').spec?.template.spec).image, 'device-link-mqtt');
    assert.match(main.image ?? '', /^[a-z0-9.-]+\/[a-z0-9/-]+:[0-9][\w.-]*$/);
  });
});

describe('EMQX by the EMQX Operator (deploy/kubernetes/emqx)', () => {
  const objects = rendered.overlay;
  const emqx = find<EmqxResource>(objects, 'EMQX');
  const core = emqx.spec.coreTemplate.spec;
  const hookInit = core.initContainers.find((entry) => entry.name === 'device-link-hook-header') as IContainer;
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'dlm-k8s-emqx-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  const TOKEN = 'k8s-test-hook-token-0123456789';

  /** Runs the init container's command as its image would, writing into `file`. */
  function runHookInit(token: string | undefined, file: string) {
    const [shell, flag, script, name] = hookInit.command ?? [];
    assert.deepEqual([shell, flag], ['/bin/sh', '-c']);
    return spawnSync('sh', ['-c', script ?? '', name ?? '', file], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...(token === undefined ? {} : { DEVICE_LINK_HOOK_TOKEN: token }) },
      encoding: 'utf8',
    });
  }

  /** The custom resource's configuration as EMQX reads it: the init container's file in place of each include. */
  function resolvedConfig(token: string): HoconObject {
    const included = (hookInit.command ?? []).at(-1) ?? '';
    const file = path.join(scratch, path.basename(included));
    assert.equal(runHookInit(token, file).status, 0);
    const header = readFileSync(file, 'utf8');
    const text = emqx.spec.config.data.replace(/^(\s*)include "([^"]+)"\s*$/gm, (_line, indent: string, target: string) => {
      assert.equal(target, included, 'the configuration includes the file the init container writes');
      return `${indent}${header.trim()}`;
    });
    return parseHocon(text);
  }

  it('bootstraps the REST API key and gets the hook token from the Secret the service reads them from', () => {
    assert.deepEqual(emqx.spec.bootstrapAPIKeys, [
      { secretRef: { key: { secretName: 'device-link-secrets', secretKey: 'EMQX_API_KEY' }, secret: { secretName: 'device-link-secrets', secretKey: 'EMQX_API_SECRET' } } },
    ]);
    assert.deepEqual(hookInit.env, [{ name: 'DEVICE_LINK_HOOK_TOKEN', valueFrom: { secretKeyRef: { name: 'device-link-secrets', key: 'EMQX_HOOK_TOKEN' } } }]);
    assert.doesNotMatch(emqx.spec.config.data, /Bearer [A-Za-z0-9]/, 'no token in the resource');
    // Kubernetes would expand $(NAME) in a command before the shell sees it.
    assert.doesNotMatch((hookInit.command ?? []).join('\n'), /\$\(/);
    assert.equal(hookInit.image, emqx.spec.image);
  });

  it('writes the Authorization header from the hook token, and refuses the tokens the compose entrypoint refuses', () => {
    const file = path.join(scratch, 'authorization.conf');
    assert.equal(runHookInit(TOKEN, file).status, 0);
    assert.deepEqual(parseHocon(readFileSync(file, 'utf8')), { authorization: `Bearer ${TOKEN}` });
    for (const token of [undefined, '', 'short-token', 'has a space in it 0123456789', 'quote"breaks-hocon-0123456789', 'new\nline-0123456789abcdef']) {
      const result = runHookInit(token, path.join(scratch, 'refused.conf'));
      assert.equal(result.status, 78, JSON.stringify(token));
      assert.match(result.stderr, /DEVICE_LINK_HOOK_TOKEN/);
    }
  });

  it('mounts the header file and the TLS certificate where the configuration reads them', () => {
    const config = resolvedConfig(TOKEN);
    const included = (hookInit.command ?? []).at(-1) ?? '';
    const hookMount = (hookInit.volumeMounts ?? []).find((mount) => included.startsWith(`${mount.mountPath}/`));
    assert.ok(hookMount, 'the init container writes into a volume');
    const emqxHookMount = core.extraVolumeMounts.find((mount) => mount.name === hookMount.name);
    assert.equal(emqxHookMount?.mountPath, hookMount.mountPath, 'EMQX reads the same volume');
    assert.equal(emqxHookMount?.readOnly, true);
    assert.ok(core.extraVolumes.find((volume) => volume.name === hookMount.name)?.emptyDir);

    const ssl = hoconObject(config, 'listeners.ssl.default.ssl_options');
    const certificates = path.posix.dirname(String(ssl.certfile));
    const tlsMount = core.extraVolumeMounts.find((mount) => mount.mountPath === certificates);
    const tls = core.extraVolumes.find((volume) => volume.name === tlsMount?.name)?.secret;
    assert.equal(tls?.secretName, 'emqx-tls');
    const items = Object.fromEntries((tls?.items ?? []).map((item) => [item.path, item.key]));
    assert.deepEqual(
      ['certfile', 'keyfile', 'cacertfile'].map((file) => items[path.posix.basename(String(ssl[file]))]),
      ['tls.crt', 'tls.key', 'ca.crt'],
      'a kubernetes.io/tls Secret (cert-manager\'s) in the file names of emqx.conf',
    );
    for (const listener of ['tcp', 'ws', 'wss']) assert.equal(hoconAt(config, `listeners.${listener}.default.enable`), false, `no ${listener} listener: the API key would cross in clear text`);
  });

  it('carries the authentication, authorization, rule and action settings of deploy/emqx/emqx.conf, differing only in the inputs', async () => {
    const config = resolvedConfig(TOKEN);
    const compose = (await renderEmqxConfig({ DEVICE_LINK_HOOK_TOKEN: TOKEN, DEVICE_LINK_API_KEY: 'device-link', DEVICE_LINK_API_SECRET: 'api-secret-0123' })).config;
    const service = find<IService>(objects, 'Service', 'device-link');
    const servicePort = service.spec?.ports?.find((entry) => entry.name === 'http')?.port;

    /** The settings with their inputs (the service's address, the hook token) put back as names. */
    const withoutInputs = (root: HoconObject, address: string) => {
      const urls = ['authentication.0.url', 'authorization.sources.0.url', 'connectors.http.device_link.url'];
      for (const url of urls) assert.equal(new URL(hoconString(root, url)).host, address, url);
      const text = JSON.stringify(
        Object.fromEntries(['authentication', 'authorization', 'connectors', 'actions', 'rule_engine', 'mqtt'].map((key) => [key, hoconAt(root, key)])),
      );
      return JSON.parse(text.split(`//${address}`).join('//<service>').split(TOKEN).join('<hook token>')) as unknown;
    };
    assert.deepEqual(withoutInputs(config, `${service.metadata.name}:${servicePort}`), withoutInputs(compose, 'device-link:8080'));
    assert.deepEqual(hoconAt(config, 'listeners.ssl.default'), hoconAt(compose, 'listeners.ssl.default'), 'the same TLS listener');
    assert.equal(hoconString(config, 'authentication.0.headers.authorization'), `Bearer ${TOKEN}`);
    // A device's messages reach one member of the ingest subscription's group, in order (docs/telemetry.md).
    assert.ok(['hash_topic', 'hash_clientid'].includes(hoconString(config, 'mqtt.shared_subscription_strategy')), 'a hash strategy for shared subscriptions');
    // What the compose file sets for its one node is the operator's here.
    for (const owned of ['node', 'cluster', 'dashboard', 'api_key']) assert.equal(hoconAt(config, owned), undefined, `${owned} is the operator's`);
  });

  it('reaches the service and is reached by it under the names the other objects have', () => {
    const settings = configMapData(objects);
    assert.equal(settings.EMQX_API_URL, `http://${emqx.metadata.name}-dashboard:18083`, 'the dashboard Service the operator makes');
    const deployment = find<IDeployment>(objects, 'Deployment', 'device-link');
    const main = container(deployment.spec?.template.spec, 'device-link');
    const fileOf = (name: string) => (main.env ?? []).find((variable) => variable.name === `${name}_FILE`)?.value ?? '';
    const files = secretFiles(deployment.spec?.template.spec as IPodSpec, main);
    const [apiKey] = emqx.spec.bootstrapAPIKeys;
    assert.deepEqual(files.get(fileOf('EMQX_API_KEY')), { secret: apiKey?.secretRef.key.secretName, key: apiKey?.secretRef.key.secretKey });
    assert.deepEqual(files.get(fileOf('EMQX_API_SECRET')), { secret: apiKey?.secretRef.secret.secretName, key: apiKey?.secretRef.secret.secretKey });
    const hook = hookInit.env?.[0]?.valueFrom?.secretKeyRef;
    assert.deepEqual(files.get(fileOf('EMQX_HOOK_TOKEN')), { secret: hook?.name, key: hook?.key });
  });

  it('runs three core nodes spread over zones and nodes, with room for the HTTP action\'s buffer, under the restricted standard', () => {
    assert.equal(emqx.spec.image, 'emqx/emqx:5.8.9');
    assert.equal(core.replicas, 3);
    assert.deepEqual(core.topologySpreadConstraints?.map((entry) => entry.topologyKey).sort(), ['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
    const memoryLimit = String(core.resources?.limits?.memory ?? '');
    assert.match(memoryLimit, /^\d+Gi$/);
    assert.ok(Number.parseInt(memoryLimit, 10) * 1024 >= 512 + 1024, 'the 512 MB buffer and the broker');
    assertRestricted('EMQX', core.podSecurityContext, [{ name: 'emqx', securityContext: core.containerSecurityContext }, ...core.initContainers]);
    const namespace = find<KubeObject>(rendered.overlay, 'Namespace');
    assert.equal(namespace.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
  });
});
