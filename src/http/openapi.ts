import { readFileSync } from 'node:fs';
import swagger, { type SwaggerTransform, type SwaggerTransformObject } from '@fastify/swagger';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import { z } from 'zod';
import { errorBodySchema } from './error-handler.js';

/** What a route says about one status it answers with. */
export interface AnswerDoc {
  readonly description: string;
  /** The body, where the route's `response` has no schema for this status (EMQX answers, text, errors of their own). */
  readonly body?: z.ZodType;
  /** Media type of the body, or the types it may have; JSON by default. */
  readonly type?: string | readonly string[];
  readonly headers?: Readonly<Record<string, z.ZodType>>;
  /** Examples of this answer's body, where they differ from the body schema's own (one schema, two statuses). */
  readonly examples?: Readonly<Record<string, { readonly summary?: string; readonly value: unknown }>>;
}

/** Every status a route answers with, and what it means. */
export type Answers = Readonly<Record<number, string | AnswerDoc>>;

declare module 'fastify' {
  interface FastifySchema {
    /**
     * Documentation only, for the API reference: every status the route
     * answers with and what it means. A 4xx or 5xx with no body of its own
     * carries the common error body.
     */
    answers?: Answers;
    /** Documentation only: the body of a route that reads its body itself, unvalidated by fastify. */
    documentedBody?: z.ZodType;
  }
}

/**
 * Named examples of a whole body (`.meta({ [NAMED_EXAMPLES]: { name: { summary, value } } })`),
 * as @fastify/swagger reads them on request bodies.
 */
export const NAMED_EXAMPLES = 'x-examples';

export type SecurityScheme = keyof typeof SECURITY_SCHEMES;

const SECURITY_SCHEMES = {
  adminToken: {
    type: 'http',
    scheme: 'bearer',
    description:
      'The root `ADMIN_TOKEN`, or a token created with `POST /v1/admin-tokens` (`dlm_at_<id>_<secret>`). A token scoped to a tenant sees that tenant only.',
  },
  hookToken: {
    type: 'http',
    scheme: 'bearer',
    description:
      "`EMQX_HOOK_TOKEN` (or, during a rotation, `EMQX_HOOK_TOKEN_PREVIOUS`), sent by EMQX's HTTP authenticator, authorization source and rule action.",
  },
} as const;

const TAGS = [
  { name: 'operations', description: 'Liveness, readiness and metrics.' },
  { name: 'docs', description: 'This reference, and the OpenAPI document it renders.' },
  { name: 'emqx', description: "Called by EMQX: authentication, authorization and rule-engine events. They answer in EMQX's own shapes." },
  { name: 'tenants', description: 'Tenants; each has its own Kafka topics.' },
  { name: 'devices', description: 'Devices and their live status.' },
  { name: 'credentials', description: 'Device API keys and PSKs.' },
  { name: 'commands', description: 'Platform → device commands through EMQX, with delivery tracking.' },
  { name: 'admin', description: 'Admin tokens and the audit log.' },
];

const DESCRIPTION = `The MQTT side of CORE-M's device link: EMQX asks it whether a device may connect and use a topic, and posts it the devices' telemetry and session events; admins manage tenants, devices, credentials and commands under \`/v1\`.

**Tokens.** Every \`/v1\` route takes \`Authorization: Bearer <admin token>\`; a token scoped to one tenant sees only that tenant, and everything else answers 404 exactly as if it did not exist. The \`/emqx\` routes take \`Authorization: Bearer <EMQX hook token>\`. The operations routes and this reference take none.

**Errors.** Every \`/v1\` and operations route answers an error with one body, \`Error\`: \`{statusCode, error, code, message, requestId}\`; \`code\` is stable, and a 400's \`message\` names the field (\`body.name: ...\`, \`params.deviceId: must be a UUID\`). A request that fails because Postgres, Redis or Kafka cannot be reached is 503 \`unavailable\`: it may succeed later. The \`/emqx\` routes answer in EMQX's own shapes instead.

**Lists** are cursor-paginated: \`limit\` at most 500 (default 50); pass \`next_cursor\` back as \`cursor\`. A cursor the listing did not issue is 400.

**Request ids.** The service gives every request its own id (96 random bits of the process, then a counter): \`/v1\` answers carry it in the \`x-request-id\` header, error bodies in \`requestId\`, the audit log in \`request_id\`. A client's own \`x-request-id\` (at most 128 printable ASCII characters; dropped otherwise) never replaces it: it is logged as \`client_request_id\` and audited in \`details.client_request_id\`.`;

/** The version the document describes: the package's, read where it is deployed beside the code (src/ or dist/). */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * Documents, for every route later registered in the (encapsulated)
 * context, what the context itself does to each request: the token it
 * requires and the answers that follow from it. Called by the same code that
 * enforces them, so the reference cannot claim a check that is not made.
 */
export function documentContext(app: FastifyInstance, docs: { security?: SecurityScheme; answers?: Answers }) {
  app.addHook('onRoute', (route) => {
    const schema: FastifySchema = route.schema ?? {};
    route.schema = {
      ...schema,
      ...(docs.security ? { security: [{ [docs.security]: [] }] } : {}),
      answers: { ...docs.answers, ...schema.answers },
    };
  });
}

/**
 * Registers the OpenAPI document of every route registered after it,
 * generated from the routes' zod schemas and their documentation
 * (`summary`, `description`, `tags`, `operationId`, `answers`, and the
 * schemas' `.describe()`/`.meta()`): `app.swagger()` once the app is ready.
 */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  const components = new Map<string, string>();
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'device-link-mqtt',
        version: VERSION,
        description: DESCRIPTION,
      },
      servers: [{ url: '/', description: 'The service itself' }],
      tags: TAGS,
      components: { securitySchemes: SECURITY_SCHEMES },
    },
    // OpenAPI 3.1 is JSON Schema 2020-12, where `const` is valid.
    convertConstToEnum: false,
    transform: transformRoute(components),
    transformObject: completeDocument(components),
  });
}

/** Adds what no single route holds: the components its schemas share. */
function completeDocument(components: Map<string, string>): SwaggerTransformObject {
  return (document) => {
    if (!('openapiObject' in document)) throw new Error('the API reference is an OpenAPI 3 document');
    const { openapiObject } = document;
    for (const operations of Object.values(openapiObject.paths ?? {})) {
      for (const operation of Object.values(operations ?? {}) as Json[]) {
        // @fastify/swagger marks every body required; some routes take none.
        if (operation[OPTIONAL_BODY] === true && isObject(operation.requestBody)) operation.requestBody.required = false;
        delete operation[OPTIONAL_BODY];
      }
    }
    const schemas = Object.fromEntries([...components].sort(([a], [b]) => a.localeCompare(b)).map(([id, json]) => [id, JSON.parse(json) as unknown]));
    return referencesBesideWords({ ...openapiObject, components: { ...openapiObject.components, schemas } }) as ReturnType<SwaggerTransformObject>;
  };
}

type Json = Record<string, unknown>;

/** Carries "the body may be left out" from a route to its operation (@fastify/swagger copies `x-` keys). */
const OPTIONAL_BODY = 'x-optional-body';

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The integer bounds zod adds to every `.int()`: true of any JSON number a client sends, so only noise in a reference. */
const SAFE_INTEGER = new Set([Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER]);

/**
 * JSON Schema of a zod schema. Schemas registered with an id (`.meta({ id })`)
 * become components, collected in `components`; the same id must always
 * yield the same schema.
 */
function toJsonSchema(schema: z.ZodType, io: 'input' | 'output', components: Map<string, string>, where: string): Json {
  const json = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io,
    unrepresentable: 'any',
    override: ({ zodSchema, jsonSchema }) => {
      const node = jsonSchema as Json;
      // zod leaves out the examples of a schema that transforms what it reads
      // (a lowercased id inside a body), as they would be of what it makes;
      // the examples given to a request's schemas are what a client sends.
      if (io === 'input' && node.examples === undefined) {
        const examples = z.globalRegistry.get(zodSchema)?.examples;
        if (examples !== undefined) node.examples = examples;
      }
      if (SAFE_INTEGER.has(node.minimum as number)) delete node.minimum;
      if (SAFE_INTEGER.has(node.maximum as number)) delete node.maximum;
      // format says it; zod's date-time pattern is unreadable.
      if (node.format === 'date-time') delete node.pattern;
      if (isObject(node.propertyNames) && node.propertyNames.type === 'string' && Object.keys(node.propertyNames).length === 1) delete node.propertyNames;
    },
  }) as Json;
  const { $schema: _dialect, $defs, ...root } = json;
  for (const [id, definition] of Object.entries(isObject($defs) ? $defs : {})) {
    const text = JSON.stringify(referencesToComponents(definition));
    const known = components.get(id);
    if (known !== undefined && known !== text) {
      throw new Error(`${where}: schema ${id} differs from another use of it (an input and an output, or two schemas with one id)`);
    }
    components.set(id, text);
  }
  return referencesToComponents(root) as Json;
}

/**
 * `#/$defs/X` becomes `#/components/schemas/X`. A reference that carries
 * words of its own (a description) moves into `allOf`, because @fastify/swagger
 * drops whatever stands beside a `$ref`.
 */
function referencesToComponents(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(referencesToComponents);
  if (!isObject(node)) return node;
  const out: Json = {};
  for (const [key, value] of Object.entries(node)) {
    out[key] = key === '$ref' && typeof value === 'string' ? value.replace('#/$defs/', '#/components/schemas/') : referencesToComponents(value);
  }
  if (typeof out.$ref === 'string' && Object.keys(out).length > 1) {
    const { $ref, ...words } = out;
    return { ...words, allOf: [{ $ref }] };
  }
  return out;
}

function mediaExamples(examples: unknown, named: unknown): Json {
  if (isObject(named)) return { examples: named };
  if (!Array.isArray(examples) || examples.length === 0) return {};
  if (examples.length === 1) return { example: examples[0] };
  return { examples: Object.fromEntries(examples.map((value, index) => [`example${index + 1}`, { value }])) };
}

/**
 * Undoes the `allOf` of referencesToComponents once @fastify/swagger is done:
 * OpenAPI 3.1 lets a `$ref` stand beside a description, and a lone `allOf`
 * reads as a composition that is not there.
 */
function referencesBesideWords(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(referencesBesideWords);
  if (!isObject(node)) return node;
  const out = Object.fromEntries(Object.entries(node).map(([key, value]) => [key, referencesBesideWords(value)]));
  const { allOf, ...words } = out;
  const [only] = Array.isArray(allOf) && allOf.length === 1 ? allOf : [];
  if (isObject(only) && typeof only.$ref === 'string' && Object.keys(only).length === 1) return { ...words, $ref: only.$ref };
  return out;
}

const isZod = (value: unknown): value is z.ZodType => value instanceof z.ZodType;

const BAD_REQUEST = "The request is malformed; the message names the field (`body.name: ...`, `params.deviceId: must be a UUID`)";

/** Turns one route's schema and documentation into what @fastify/swagger writes as its operation. */
function transformRoute(components: Map<string, string>): SwaggerTransform {
  return ({ schema, url, route }) => {
    const where = `${[route.method].flat().join(',')} ${url}`;
    const given: FastifySchema = schema ?? {};
    for (const field of ['summary', 'operationId', 'tags'] as const) {
      if (!given[field]) throw new Error(`${where} documents no ${field}: give its schema one`);
    }
    const json = (value: unknown, io: 'input' | 'output', part: string) => {
      if (!isZod(value)) throw new Error(`${where}: ${part} is not a zod schema`);
      return toJsonSchema(value, io, components, `${where} ${part}`);
    };
    const { params, querystring, headers, body, documentedBody, response: _response, answers: _answers, ...words } = given;
    const out: Json = { ...words, security: given.security ?? [] };
    if (params) out.params = json(params, 'input', 'params');
    if (querystring) out.querystring = json(querystring, 'input', 'querystring');
    if (headers) out.headers = json(headers, 'input', 'headers');
    if (body ?? documentedBody) out.body = json(body ?? documentedBody, 'input', 'body');
    // A body schema that accepts null takes a request with no body (fastify passes null).
    if (isZod(body) && body.safeParse(null).success) out[OPTIONAL_BODY] = true;
    out.response = responses(route, given, json, where);
    return { schema: out as FastifySchema, url };
  };
}

function responses(route: RouteOptions, schema: FastifySchema, json: (value: unknown, io: 'input' | 'output', part: string) => Json, where: string): Json {
  const runtime = (isObject(schema.response) ? schema.response : {}) as Record<string, unknown>;
  const answers: Record<number, string | AnswerDoc> = { ...schema.answers };
  // The app's error handler answers a request its schemas refuse with 400; a
  // route with an error handler of its own, or served directly (the EMQX
  // ones), answers otherwise.
  const validates = Boolean(schema.params ?? schema.querystring ?? schema.headers ?? schema.body);
  const ownAnswers = route.errorHandler !== undefined || route.config?.servedDirectly === true;
  if (validates && !ownAnswers && answers[400] === undefined) answers[400] = BAD_REQUEST;

  const statuses = [...new Set([...Object.keys(runtime), ...Object.keys(answers)].map(Number))].sort((a, b) => a - b);
  const out: Json = {};
  for (const status of statuses) {
    const answer = answers[status];
    if (answer === undefined) throw new Error(`${where}: answer ${status} is not described; add it to the route's answers`);
    const doc: AnswerDoc = typeof answer === 'string' ? { description: answer } : answer;
    const bodySchema = runtime[status] ?? doc.body ?? (status >= 400 ? errorBodySchema : undefined);
    if (bodySchema === undefined) {
      // No body: @fastify/swagger writes no content for a null schema.
      out[status] = { type: 'null', description: doc.description };
      continue;
    }
    // Examples of the whole body belong to the media type, as @fastify/swagger does for request bodies.
    const { examples, [NAMED_EXAMPLES]: named, ...bodyJson } = json(bodySchema, 'output', `answer ${status}`);
    out[status] = {
      description: doc.description,
      ...(doc.headers ? { headers: Object.fromEntries(Object.entries(doc.headers).map(([name, header]) => [name, json(header, 'output', `header ${name}`)])) } : {}),
      content: Object.fromEntries([doc.type ?? 'application/json'].flat().map((type) => [type, { schema: bodyJson, ...mediaExamples(examples, doc.examples ?? named) }])),
    };
  }
  return out;
}

/** The document as `openapi.yaml` holds it; `npm run openapi` writes it and the tests compare it. */
export function openApiYaml(app: FastifyInstance): string {
  return `# Generated from the routes by \`npm run openapi\`: change the routes, not this file.\n${app.swagger({ yaml: true })}`;
}
