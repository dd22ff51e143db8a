import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../dev/emqx-sim/emqx-config.js';
import { sourceFiles } from './helpers/source-files.js';

/**
 * Imports run one way (docs/architecture.md): routes → services → repositories and
 * stores → infra/ and lib/. The composition (app.ts, composition.ts,
 * wiring/) sits on top and may import anything below it; nothing imports it.
 */

const SRC = path.join(REPO_ROOT, 'src');

/** Relative import specifiers of a source text, static and dynamic, type-only included. */
function relativeImports(source: string): string[] {
  const found: string[] = [];
  for (const match of source.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^import\s+)['"](\.[^'"]+)['"]/gm)) found.push(match[1] as string);
  return found;
}

type Kind = 'lib' | 'infra' | 'http' | 'routes' | 'store' | 'service' | 'wiring' | 'composition' | 'app' | 'entry' | 'outside';

function kindOf(file: string): Kind {
  const relative = path.relative(SRC, file).split(path.sep).join('/');
  if (relative.startsWith('..')) return 'outside';
  if (relative.startsWith('lib/')) return 'lib';
  if (relative.startsWith('infra/')) return 'infra';
  if (relative.startsWith('http/')) return 'http';
  if (relative.startsWith('wiring/')) return 'wiring';
  if (relative === 'composition.ts') return 'composition';
  if (relative === 'app.ts' || relative === 'config.ts') return 'app';
  if (relative === 'main.ts' || relative.startsWith('cli/')) return 'entry';
  if (/-routes\.ts$/.test(relative)) return 'routes';
  if (/-(repository|store)\.ts$/.test(relative)) return 'store';
  return 'service';
}

const moduleOf = (file: string) => /\/modules\/([^/]+)\//.exec(file.split(path.sep).join('/'))?.[1] ?? null;

/** Why `from` may not import `to`, or null when it may. */
function violation(from: string, to: string): string | null {
  const source = kindOf(from);
  const target = kindOf(to);
  if (target === 'outside') return 'imports from outside src/ (tests, bench and dev tools are never imported by the product)';
  if (to.endsWith('/config.ts')) return source === 'app' || source === 'entry' || source === 'wiring' || source === 'composition' ? null : 'reads the config module (config is passed down)';
  const allowed: Record<Kind, Kind[]> = {
    lib: ['lib'],
    infra: ['lib', 'infra'],
    http: ['lib', 'http'],
    store: ['lib', 'infra', 'store'],
    service: ['lib', 'infra', 'store', 'service'],
    routes: ['lib', 'http', 'service', 'store'],
    wiring: ['lib', 'infra', 'http', 'store', 'service', 'wiring'],
    composition: ['lib', 'infra', 'store', 'service', 'wiring'],
    app: ['lib', 'infra', 'http', 'routes', 'composition', 'wiring'],
    entry: ['lib', 'infra', 'app'],
    outside: [],
  };
  if (!allowed[source].includes(target)) return `${source} imports ${target}`;
  // A module's routes import its own service and schemas, never another module's.
  if (source === 'routes' && (target === 'service' || target === 'store') && moduleOf(from) !== moduleOf(to)) {
    return "routes import another module's code";
  }
  return null;
}

describe('imports run one way', () => {
  it('tells the layers apart', () => {
    const at = (relative: string) => path.join(SRC, relative);
    assert.equal(violation(at('modules/a/a-service.ts'), at('modules/b/b-routes.ts')), 'service imports routes');
    assert.equal(violation(at('modules/a/a-routes.ts'), at('modules/b/b-service.ts')), "routes import another module's code");
    assert.equal(violation(at('modules/a/a-repository.ts'), at('modules/a/a-service.ts')), 'store imports service');
    assert.equal(violation(at('lib/x.ts'), at('infra/y.ts')), 'lib imports infra');
    assert.equal(violation(at('modules/a/a-metrics.ts'), at('http/metrics.ts')), 'service imports http');
    assert.match(violation(at('modules/a/a-service.ts'), path.join(REPO_ROOT, 'test/helpers/x.ts')) ?? '', /outside src/);
    // The product meets EMQX over HTTP and MQTT only, never its simulation.
    assert.match(violation(at('infra/emqx-api.ts'), path.join(REPO_ROOT, 'dev/emqx-sim/emqx-facts.ts')) ?? '', /outside src/);
    assert.equal(violation(at('modules/a/a-routes.ts'), at('modules/a/a-service.ts')), null);
    assert.equal(violation(at('wiring/a.ts'), at('modules/a/a-service.ts')), null);
    assert.deepEqual(relativeImports("import type { A } from './a.js';\nimport './b.js';\nconst c = await import('../c.js');"), ['./a.js', './b.js', '../c.js']);
  });

  it('holds for every file under src/', () => {
    const problems: string[] = [];
    for (const file of sourceFiles(SRC)) {
      for (const specifier of relativeImports(readFileSync(file, 'utf8'))) {
        const target = path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts'));
        const why = violation(file, target);
        if (why) problems.push(`${path.relative(REPO_ROOT, file)} → ${specifier}: ${why}`);
      }
    }
    assert.deepEqual(problems, []);
  });
});
