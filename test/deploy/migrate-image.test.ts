import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT } from '../../dev/emqx-sim/emqx-config.js';
import { createEmptyDatabase, type TestDatabase } from '../helpers/database.js';
import { uniqueTag } from '../helpers/env.js';

const run = promisify(execFile);

/**
 * The production image has no tsx: its migration command (the Kubernetes Job
 * device-link-migrate, `npm run db:migrate:dist`) is `node
 * dist/cli/migrate.js` from the image's working directory. This builds the
 * files the Dockerfile copies into the image, lays them out the same way, and
 * migrates a database with that command.
 */

const dockerfile = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
const packageJson = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const MIGRATE = ['node', 'dist/cli/migrate.js'];

describe('migrating from the production image', () => {
  let app: string;
  let database: TestDatabase;

  before(async () => {
    app = mkdtempSync(path.join(os.tmpdir(), 'dlm-image-'));
    const typescript = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    await run(process.execPath, [typescript, '-p', path.join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', path.join(app, 'dist')], { cwd: REPO_ROOT });
    cpSync(path.join(REPO_ROOT, 'migrations'), path.join(app, 'migrations'), { recursive: true });
    cpSync(path.join(REPO_ROOT, 'package.json'), path.join(app, 'package.json'));
    // The image's node_modules holds the production dependencies, which this one includes.
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(app, 'node_modules'), 'dir');
    database = await createEmptyDatabase(uniqueTag());
  });

  after(async () => {
    await database?.drop();
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it('lays out the image as the command expects: the build output and the migrations side by side, without tsx', () => {
    assert.match(finalStage, /^WORKDIR \/app$/m);
    assert.match(finalStage, /^COPY --from=build \/app\/dist \.\/dist$/m);
    assert.match(finalStage, /^COPY migrations \.\/migrations$/m);
    assert.match(finalStage, /^COPY package\.json \.\/$/m);
    assert.match(dockerfile, /npm prune --omit=dev/, 'development dependencies are left out of the image');
    assert.ok('tsx' in packageJson.devDependencies && !('tsx' in packageJson.dependencies), 'so tsx is not in the image');
    const ignored = readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim());
    for (const needed of ['migrations', 'src', 'package.json']) assert.ok(!ignored.includes(needed), `.dockerignore keeps ${needed}`);
    assert.equal(packageJson.scripts['db:migrate:dist'], MIGRATE.join(' '), 'npm run db:migrate:dist is the same command');
  });

  it('applies every migration with node dist/cli/migrate.js, then finds nothing to do', async () => {
    const secret = path.join(app, 'database-url');
    writeFileSync(secret, `${database.url}\n`);
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', DATABASE_URL_FILE: secret };
    const files = readdirSync(path.join(REPO_ROOT, 'migrations')).filter((file) => file.endsWith('.sql'));
    assert.ok(files.length > 0);
    const first = await run(process.execPath, MIGRATE.slice(1), { cwd: app, env });
    assert.match(first.stderr, new RegExp(`applied ${files.length} migration\\(s\\)`));
    const again = await run(process.execPath, MIGRATE.slice(1), { cwd: app, env });
    assert.match(again.stderr, /database is up to date/);
  });

  it('exits non-zero when it cannot migrate', async () => {
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' };
    await assert.rejects(run(process.execPath, MIGRATE.slice(1), { cwd: app, env }), (error: { code?: number; stderr?: string }) => {
      assert.equal(error.code, 1);
      assert.match(String(error.stderr), /migration failed/);
      return true;
    });
  });
});
