import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { lint, loadConfig } from '@redocly/openapi-core';
import type { FastifyInstance } from 'fastify';
import { parse } from 'yaml';
import { openApiYaml } from '../src/http/openapi.js';
import { createTestContext, type TestContext } from './helpers/context.js';

interface OpenApiDocument {
  paths: Record<string, Record<string, unknown>>;
}

const METHODS = new Set(['get', 'post', 'put', 'patch', 'delete']);

/** Where two texts first differ, line by line, to say what to look at. */
function firstDifference(committed: string, generated: string): string {
  const a = committed.split('\n');
  const b = generated.split('\n');
  const line = a.findIndex((text, index) => text !== b[index]);
  const at = line === -1 ? a.length : line;
  return `line ${at + 1}: committed ${JSON.stringify(a[at] ?? '(end of file)')}, generated ${JSON.stringify(b[at] ?? '(end of file)')}`;
}

describe('openapi.yaml', () => {
  let ctx: TestContext;
  let app: FastifyInstance;

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
  });
  after(() => ctx.close());

  it('is what the routes generate', async () => {
    const committed = await readFile('openapi.yaml', 'utf8');
    const generated = openApiYaml(app);
    assert.ok(
      committed === generated,
      `openapi.yaml is not what the routes generate: run \`npm run openapi\` and commit openapi.yaml (${firstDifference(committed, generated)})`,
    );
  });

  it('passes the linter with no error or warning (redocly.yaml)', async () => {
    const config = await loadConfig({ configPath: 'redocly.yaml' });
    const problems = await lint({ ref: 'openapi.yaml', config });
    assert.deepEqual(
      problems.map((problem) => `${problem.severity} ${problem.ruleId}: ${problem.message} (${problem.location[0]?.pointer ?? ''})`),
      [],
    );
  });

  it('describes exactly the routes the app registers', async () => {
    const document = parse(await readFile('openapi.yaml', 'utf8')) as OpenApiDocument;
    const documented = Object.entries(document.paths)
      .flatMap(([path, operations]) =>
        Object.keys(operations)
          .filter((method) => METHODS.has(method))
          // OpenAPI writes {param}; fastify writes :param.
          .map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
      )
      .sort();
    const registered = [...new Set(app.routeList)].sort();
    const missingFromSpec = registered.filter((route) => !documented.includes(route));
    const notInApp = documented.filter((route) => !registered.includes(route));
    assert.deepEqual({ missingFromSpec, notInApp }, { missingFromSpec: [], notInApp: [] });
  });

  it('every $ref points at a component that exists', async () => {
    const document = parse(await readFile('openapi.yaml', 'utf8')) as Record<string, unknown>;
    const refs: string[] = [];
    const walk = (node: unknown) => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === 'object') {
        for (const [key, value] of Object.entries(node)) {
          if (key === '$ref' && typeof value === 'string') refs.push(value);
          else walk(value);
        }
      }
    };
    walk(document);
    assert.ok(refs.length > 0);
    const unresolved = refs.filter((ref) => {
      let target: unknown = document;
      for (const part of ref.replace(/^#\//, '').split('/')) {
        target = target && typeof target === 'object' ? (target as Record<string, unknown>)[part] : undefined;
      }
      return target === undefined;
    });
    assert.deepEqual([...new Set(unresolved)], []);
  });

  it('documents the errors of the admin API with the body they have', async () => {
    const document = parse(await readFile('openapi.yaml', 'utf8')) as OpenApiDocument;
    const refused = await app.inject({ method: 'GET', url: '/v1/devices/not-a-uuid', headers: { authorization: 'Bearer nothing' } });
    assert.equal(refused.statusCode, 401);
    const operation = document.paths['/v1/devices/{deviceId}']?.get as { responses: Record<string, { content?: Record<string, { schema: unknown }> }> };
    assert.deepEqual(operation.responses['401']?.content?.['application/json']?.schema, { $ref: '#/components/schemas/Error' });
    assert.deepEqual(Object.keys(refused.json()).sort(), ['code', 'error', 'message', 'requestId', 'statusCode']);
  });
});
