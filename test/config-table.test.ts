import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { SECRET_VARIABLES } from '../src/config.js';
import { REPO_ROOT } from '../dev/emqx-sim/emqx-config.js';
import { configDocTable } from './helpers/config-doc.js';
import { sourceFiles } from './helpers/source-files.js';

/**
 * The configuration table (docs/configuration.md) and the code describe the same variables:
 * every variable the service reads is documented, and every documented
 * variable is read. Reads are the keys of the zod schema in src/config.ts and
 * any direct `process.env.NAME` elsewhere in src/.
 */

/** Keys of `const envSchema = z.object({ ... })`, read from the source text. */
function envSchemaKeys(source: string): string[] {
  const start = /const envSchema = z\.object\(\{/.exec(source);
  if (!start) throw new Error('src/config.ts has no `const envSchema = z.object({`');
  let depth = 0;
  let end = -1;
  for (let index = start.index + start[0].length - 1; index < source.length; index += 1) {
    if (source[index] === '{') depth += 1;
    else if (source[index] === '}') {
      depth -= 1;
      if (depth === 0) {
        end = index;
        break;
      }
    }
  }
  if (end < 0) throw new Error('the envSchema object never closes');
  const body = source.slice(start.index + start[0].length, end);
  // Only keys at the object's own level: a line that starts with NAME: after indentation.
  return [...body.matchAll(/^\s{2}([A-Z][A-Z0-9_]*):/gm)].map((match) => match[1] as string);
}

/** Variables read directly through process.env; a computed name is an error, since it cannot be checked. */
function directEnvReads(source: string, file: string): string[] {
  const names: string[] = [];
  for (const match of source.matchAll(/process\.env(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(['"])([A-Za-z_][A-Za-z0-9_]*)\2\s*\]|(\s*\[)|\b)/g)) {
    if (match[1]) names.push(match[1]);
    else if (match[3]) names.push(match[3]);
    else if (match[4]) throw new Error(`${file}: process.env[...] with a computed name`);
  }
  if (/\{[^}]*\}\s*=\s*process\.env\b/.test(source)) throw new Error(`${file}: destructuring process.env cannot be checked`);
  return names;
}

describe('the configuration table in docs/configuration.md', () => {
  const table = configDocTable();
  const documented = new Set(table.map((row) => row.name));
  const configSource = readFileSync(path.join(REPO_ROOT, 'src/config.ts'), 'utf8');
  const read = new Set(envSchemaKeys(configSource));
  for (const file of sourceFiles(path.join(REPO_ROOT, 'src'))) {
    for (const name of directEnvReads(readFileSync(file, 'utf8'), path.relative(REPO_ROOT, file))) read.add(name);
  }

  it('finds what it looks for', () => {
    assert.deepEqual(envSchemaKeys('const envSchema = z.object({\n  A_B: x,\n  nested: z.object({\n    NOT_ME: y,\n  }),\n  C: z.string(),\n});'), ['A_B', 'C']);
    assert.deepEqual(directEnvReads("process.env.FOO + process.env['BAR'] + f(process.env)", 'x.ts'), ['FOO', 'BAR']);
    assert.throws(() => directEnvReads('process.env[name]', 'x.ts'), /computed/);
    assert.throws(() => directEnvReads('const { A } = process.env;', 'x.ts'), /destructuring/);
    assert.ok(read.has('DATABASE_URL') && read.has('PORT'));
  });

  it('documents every variable the service reads', () => {
    const missing = [...read].filter((name) => !documented.has(name)).sort();
    assert.deepEqual(missing, [], `read by src/ but not in the table: ${missing.join(', ')}`);
  });

  it('documents only variables the service reads', () => {
    const stale = [...documented].filter((name) => !read.has(name)).sort();
    assert.deepEqual(stale, [], `in the table but read nowhere in src/: ${stale.join(', ')}`);
  });

  it('lists each variable once', () => {
    assert.equal(documented.size, table.length);
  });

  it('marks exactly the secrets, each of which may also come from NAME_FILE', () => {
    for (const row of table) {
      const isSecret = (SECRET_VARIABLES as readonly string[]).includes(row.name);
      assert.equal(/\bsecret\b/.test(row.defaultValue), isSecret, `${row.name}: default column "${row.defaultValue}"`);
      if (isSecret) assert.ok(row.defaultValue.startsWith('—'), `${row.name}: a secret has no default`);
    }
    const readme = readFileSync(path.join(REPO_ROOT, 'docs/configuration.md'), 'utf8');
    assert.match(readme, /`NAME_FILE`/, 'the configuration doc explains the NAME_FILE variant of secrets');
    assert.match(configSource, /`\$\{name\}_FILE`/, 'src/config.ts reads NAME_FILE for every secret');
  });
});
