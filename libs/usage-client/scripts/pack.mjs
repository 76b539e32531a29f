#!/usr/bin/env node
// Builds an installable tarball of @parley/usage-client for bots outside this workspace:
// the client and the @parley/contracts code it uses, compiled fresh into a staging folder
// (contracts under dist/contracts/, imported relatively), with dependencies only on public
// packages. Writes <out>/parley-usage-client-<version>.tgz (default out: libs/usage-client/pack/)
// and prints its path.
//
//   node scripts/pack.mjs [--out <dir>]
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = resolve(here, '..');
const root = resolve(pkgDir, '../..');
const contractsDir = join(root, 'libs', 'contracts');
const BUNDLED = '@parley/contracts';

const outArg = process.argv.indexOf('--out');
const outDir = resolve(outArg > -1 ? process.argv[outArg + 1] : join(pkgDir, 'pack'));

const fail = (message) => {
  process.stderr.write(`pack: ${message}\n`);
  process.exit(1);
};
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

const tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');

const stage = mkdtempSync(join(tmpdir(), 'usage-client-pack-'));
try {
  const pkg = readJson(join(pkgDir, 'package.json'));
  const contractsPkg = readJson(join(contractsDir, 'package.json'));
  const pkgRoot = join(stage, 'package');
  const dist = join(pkgRoot, 'dist');

  // One compilation of the client's and the contracts' sources, with @parley/contracts mapped to
  // the contracts' source, so nothing depends on what libs/*/dist holds (no stale files either).
  const raw = join(stage, 'raw');
  const tsconfig = join(stage, 'tsconfig.json');
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(pkgDir, 'tsconfig.build.json'),
      compilerOptions: {
        rootDir: join(root, 'libs'),
        outDir: raw,
        composite: false,
        incremental: false,
        declaration: true,
        sourceMap: false,
        declarationMap: false,
        paths: { [BUNDLED]: [join(contractsDir, 'src', 'index.ts')] },
        typeRoots: [join(root, 'node_modules', '@types')],
      },
      include: [join(pkgDir, 'src'), join(contractsDir, 'src')],
      exclude: [join(pkgDir, 'src', '**', '*.spec.ts'), join(contractsDir, 'src', '**', '*.spec.ts')],
    }),
  );
  execFileSync(process.execPath, [tsc, '-p', tsconfig], { stdio: 'inherit' });
  cpSync(join(raw, 'usage-client', 'src'), dist, { recursive: true });
  cpSync(join(raw, 'contracts', 'src'), join(dist, 'contracts'), { recursive: true });

  // Point the client's imports of @parley/contracts (require, import, import() types) at the copy.
  const files = (dir) =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
    );
  const specifier = new RegExp(`(['"])${BUNDLED.replace('/', '\\/')}\\1`, 'g');
  for (const file of files(dist)) {
    const text = readFileSync(file, 'utf8');
    let target = relative(dirname(file), join(dist, 'contracts')).split('\\').join('/');
    if (!target.startsWith('.')) target = `./${target}`;
    const rewritten = text.replace(specifier, `$1${target}$1`);
    if (rewritten !== text) writeFileSync(file, rewritten);
  }
  // Nothing may still name a workspace package.
  for (const file of files(dist)) {
    const left = /(['"])@parley\/[^'"]*\1/.exec(readFileSync(file, 'utf8'));
    if (left) fail(`${relative(pkgRoot, file)} still imports ${left[0]}`);
  }

  // Dependencies: the client's and the contracts', public packages only, at one version each.
  const dependencies = {};
  for (const [name, version] of [
    ...Object.entries(pkg.dependencies ?? {}),
    ...Object.entries(contractsPkg.dependencies ?? {}),
  ]) {
    if (name.startsWith('@parley/')) continue;
    if (version.startsWith('workspace:')) fail(`${name} is a workspace dependency`);
    if (dependencies[name] && dependencies[name] !== version) {
      fail(`${name} is wanted at ${dependencies[name]} and ${version}`);
    }
    dependencies[name] = version;
  }
  const manifest = {
    name: pkg.name,
    version: pkg.version,
    description: 'Reports a bot’s LLM usage and activity to Parley over NATS JetStream, and checks its quota.',
    license: 'UNLICENSED',
    // Installable from the tarball; not for a public registry.
    private: true,
    type: 'commonjs',
    main: pkg.main,
    types: pkg.types,
    exports: pkg.exports,
    files: ['dist', 'README.md'],
    engines: { node: '>=20' },
    dependencies: Object.fromEntries(Object.entries(dependencies).sort(([a], [b]) => a.localeCompare(b))),
  };
  writeFileSync(join(pkgRoot, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  cpSync(join(pkgDir, 'README.md'), join(pkgRoot, 'README.md'));
  for (const entry of [pkg.main, pkg.types]) {
    if (!existsSync(join(pkgRoot, entry))) fail(`${entry} was not built`);
  }

  mkdirSync(outDir, { recursive: true });
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  // Run under pnpm, npm would see pnpm's npm_config_* settings and warn about each.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_config_/i.test(key)));
  const packed = JSON.parse(
    execFileSync(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', outDir], {
      cwd: pkgRoot,
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  const tarball = join(outDir, packed[0].filename);
  process.stdout.write(`${tarball}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
