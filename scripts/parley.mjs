#!/usr/bin/env node
// Parley's one entry point: `npm start` and `npm test` call it. It runs on whatever Node the
// machine has (20+), fetches the pinned Node 24 and pnpm into .toolchain/, installs and builds
// the workspace, makes sure PostgreSQL, NATS (with JetStream) and Redis answer, and then either
// starts the five services or runs every check and test suite. `backup <file>` and
// `restore <file> [--schema <service>]` back up and restore every service's schema
// (docs/operations.md).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOOLCHAIN = join(ROOT, '.toolchain');
const STATE = join(ROOT, '.parley');
const BIN = join(TOOLCHAIN, 'node_modules', '.bin');
const NODE_VERSION = '24.21.0';
const PNPM_VERSION = '10.34.9';
/** Node's flags and the environment every service process starts with (docs/configuration.md). */
const SERVICE_PROCESS = JSON.parse(readFileSync(join(ROOT, 'scripts', 'service-process.json'), 'utf8'));
const SERVICES = [
  { name: 'access', portVar: 'ACCESS_HTTP_PORT', port: 8081 },
  { name: 'session', portVar: 'SESSION_HTTP_PORT', port: 8082 },
  { name: 'message', portVar: 'MESSAGE_HTTP_PORT', port: 8083 },
  { name: 'usage', portVar: 'USAGE_HTTP_PORT', port: 8084 },
  { name: 'gateway', portVar: 'GATEWAY_PORT', port: 8080 },
];

const log = (message) => process.stdout.write(`parley: ${message}\n`);
const fail = (message) => {
  process.stderr.write(`parley: ${message}\n`);
  process.exit(1);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Environment for every child: the project's Node 24 and pnpm first on PATH. */
const childEnv = (extra = {}) => ({ ...process.env, PATH: `${BIN}:${process.env.PATH ?? ''}`, ...extra });

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: ROOT, env: childEnv(), ...options });
  if (result.error) fail(`${command} could not run: ${result.error.message}`);
  return result.status ?? 1;
}

function mustRun(step, command, args, options) {
  const status = run(command, args, options);
  if (status !== 0) fail(`${step} failed (exit ${status})`);
}

function versionOf(binary) {
  if (!existsSync(binary)) return undefined;
  const result = spawnSync(binary, ['--version'], { encoding: 'utf8', env: childEnv() });
  return result.status === 0 ? result.stdout.trim().replace(/^v/, '') : undefined;
}

// 1. Toolchain ----------------------------------------------------------------------------
function ensureToolchain() {
  if (versionOf(join(BIN, 'node')) === NODE_VERSION && versionOf(join(BIN, 'pnpm')) === PNPM_VERSION) return;
  log(`fetching Node ${NODE_VERSION} and pnpm ${PNPM_VERSION} into .toolchain/`);
  mkdirSync(TOOLCHAIN, { recursive: true });
  writeFileSync(join(TOOLCHAIN, 'package.json'), '{ "name": "parley-toolchain", "private": true }\n');
  mustRun('installing the toolchain', 'npm', [
    'install',
    '--prefix',
    TOOLCHAIN,
    '--no-audit',
    '--no-fund',
    '--no-save',
    `node@${NODE_VERSION}`,
    `pnpm@${PNPM_VERSION}`,
  ]);
  const node = versionOf(join(BIN, 'node'));
  if (node !== NODE_VERSION) fail(`expected Node ${NODE_VERSION} in .toolchain, found ${node ?? 'nothing'}`);
}

// 2. Dependencies and build ---------------------------------------------------------------
function newestMtime(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const entry of readdirSync(path)) {
    if (entry === 'dist' || entry === 'node_modules') continue;
    newest = Math.max(newest, newestMtime(join(path, entry)));
  }
  return newest;
}

function ensureDependencies() {
  const marker = join(ROOT, 'node_modules', '.modules.yaml');
  const lock = join(ROOT, 'pnpm-lock.yaml');
  const fresh = existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs;
  if (process.env.CI === 'true' || !fresh) {
    log('installing dependencies (pnpm install --frozen-lockfile)');
    mustRun('pnpm install', join(BIN, 'pnpm'), ['install', '--frozen-lockfile'], {
      env: childEnv({ CI: 'true' }),
    });
  }
}

function build() {
  const stamp = join(STATE, 'build.stamp');
  const sources = ['libs', 'services', 'apps'].map((d) => newestMtime(join(ROOT, d)));
  const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  if (process.env.CI !== 'true' && built > Math.max(...sources)) return;
  log('building the workspace');
  mustRun('build', join(BIN, 'pnpm'), ['-r', '--workspace-concurrency=2', 'run', 'build']);
  mkdirSync(STATE, { recursive: true });
  writeFileSync(stamp, new Date().toISOString());
}

// 3. Infrastructure -----------------------------------------------------------------------
function endpoint(url, fallbackPort) {
  const parsed = new URL(url);
  return { host: parsed.hostname || '127.0.0.1', port: Number(parsed.port || fallbackPort) };
}

/** Resolves with the first bytes the server sends (NATS says INFO first), or '' for silent servers. */
function probe({ host, port }, timeoutMs = 1500) {
  return new Promise((resolvePromise) => {
    const socket = connect({ host, port });
    let greeting = '';
    const done = (value) => {
      socket.destroy();
      resolvePromise(value);
    };
    socket.setTimeout(timeoutMs, () => done(greeting));
    socket.on('data', (chunk) => {
      greeting += chunk.toString();
      if (greeting.includes('\n')) done(greeting);
    });
    socket.on('connect', () => setTimeout(() => done(greeting), 300));
    socket.on('error', () => done(undefined));
  });
}

async function waitFor(name, target, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await probe(target)) !== undefined) return;
    await sleep(500);
  }
  fail(`${name} did not answer on ${target.host}:${target.port} within ${timeoutMs / 1000} s`);
}

const started = [];

function hasDocker() {
  const result = spawnSync('docker', ['info'], { stdio: 'ignore' });
  return result.status === 0;
}

function which(binary) {
  const result = spawnSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

function postgresBin(binary) {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    for (const version of readdirSync(base).sort().reverse()) {
      const path = join(base, version, 'bin', binary);
      if (existsSync(path)) return path;
    }
  }
  return which(binary);
}

function startWithDocker(service) {
  const compose =
    spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0
      ? ['docker', 'compose']
      : ['docker-compose'];
  log(`starting ${service} with ${compose.join(' ')}`);
  mustRun(`starting ${service}`, compose[0], [...compose.slice(1), 'up', '-d', service]);
  started.push({ name: service, stop: () => run(compose[0], [...compose.slice(1), 'stop', service]) });
}

function startNatsContainer(port) {
  const name = `parley-nats-${port}`;
  log(`starting NATS (nats:2.10.24 with JetStream) in the container ${name}`);
  mustRun('starting NATS', 'docker', [
    'run',
    '-d',
    '--rm',
    '--name',
    name,
    '-p',
    `127.0.0.1:${port}:4222`,
    'nats:2.10.24',
    '-js',
  ]);
  started.push({ name: 'nats', stop: () => run('docker', ['stop', name]) });
}

function startPostgres(port) {
  if (existsSync('/etc/postgresql')) {
    const versions = readdirSync('/etc/postgresql');
    if (versions.length > 0 && which('pg_ctlcluster')) {
      log('starting the system PostgreSQL cluster');
      if (run('pg_ctlcluster', ['--skip-systemctl-redirect', versions.sort().at(-1), 'main', 'start']) === 0) return;
    }
  }
  const initdb = postgresBin('initdb');
  const pgctl = postgresBin('pg_ctl');
  if (!initdb || !pgctl) fail('PostgreSQL is not running and no PostgreSQL binaries were found (install postgresql)');
  const data = join(STATE, 'pg');
  const asPostgres = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  if (!existsSync(join(data, 'PG_VERSION'))) {
    log('creating a PostgreSQL data folder in .parley/pg');
    mkdirSync(data, { recursive: true });
    if (asPostgres.length) run('chown', ['-R', 'postgres:postgres', STATE]);
    mustRun('initdb', asPostgres[0] ?? initdb, [
      ...asPostgres.slice(1),
      ...(asPostgres.length ? [initdb] : []),
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
    ]);
  }
  log(`starting PostgreSQL from .parley/pg on port ${port}`);
  const args = [
    '-D',
    data,
    '-l',
    join(data, 'server.log'),
    '-o',
    `-p ${port} -k /tmp -c listen_addresses=127.0.0.1`,
    'start',
  ];
  mustRun('pg_ctl start', asPostgres[0] ?? pgctl, [
    ...asPostgres.slice(1),
    ...(asPostgres.length ? [pgctl] : []),
    ...args,
  ]);
  started.push({
    name: 'postgres',
    stop: () =>
      run(asPostgres[0] ?? pgctl, [
        ...asPostgres.slice(1),
        ...(asPostgres.length ? [pgctl] : []),
        '-D',
        data,
        'stop',
        '-m',
        'fast',
      ]),
  });
}

function startDaemon(name, binary, args) {
  const path = which(binary);
  if (!path) fail(`${name} is not running and ${binary} was not found (install it, or start ${name} yourself)`);
  log(`starting ${name} (${binary}) with data under .parley/`);
  const child = spawn(path, args, { stdio: 'ignore', detached: true });
  child.unref();
  started.push({ name, stop: () => child.kill('SIGTERM') });
}

async function ensureInfrastructure() {
  const pg = endpoint(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/parley', 5432);
  const nats = endpoint((process.env.NATS_URL ?? 'nats://127.0.0.1:4222').split(',')[0], 4222);
  const redis = endpoint(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', 6379);
  const docker = hasDocker();
  mkdirSync(STATE, { recursive: true });

  if ((await probe(pg)) === undefined) {
    if (docker) startWithDocker('postgres');
    else startPostgres(pg.port);
    await waitFor('PostgreSQL', pg);
  }
  if ((await probe(redis)) === undefined) {
    if (docker) startWithDocker('redis');
    else {
      mkdirSync(join(STATE, 'redis'), { recursive: true });
      startDaemon('Redis', 'redis-server', [
        '--bind',
        redis.host,
        '--port',
        String(redis.port),
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        join(STATE, 'redis'),
      ]);
    }
    await waitFor('Redis', redis);
  }
  let greeting = await probe(nats);
  if (greeting === undefined) {
    // Not the compose service: that one runs in operator mode with generated credentials, and
    // the services started here connect without any (a local server without authorization).
    if (docker) startNatsContainer(nats.port);
    else {
      mkdirSync(join(STATE, 'nats'), { recursive: true });
      startDaemon('NATS', 'nats-server', ['-a', nats.host, '-p', String(nats.port), '-js', '-sd', join(STATE, 'nats')]);
    }
    await waitFor('NATS', nats);
    greeting = await probe(nats);
  }
  if (!greeting?.includes('"jetstream":true')) {
    fail(`the NATS server on ${nats.host}:${nats.port} has no JetStream; start it with -js`);
  }
  ensureDatabase();
}

function ensureDatabase() {
  const url = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/parley');
  const database = decodeURIComponent(url.pathname.slice(1)) || 'parley';
  const psql = postgresBin('psql');
  if (!psql) fail('psql was not found: it is needed to create the database');
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const exists = spawnSync(
    psql,
    [admin.toString(), '-tAc', `select 1 from pg_database where datname = '${database.replaceAll("'", "''")}'`],
    {
      encoding: 'utf8',
    },
  );
  if (exists.status !== 0) fail(`cannot query PostgreSQL: ${exists.stderr.trim()}`);
  if (exists.stdout.trim() !== '1') {
    log(`creating database ${database}`);
    mustRun('create database', psql, [admin.toString(), '-c', `create database "${database.replaceAll('"', '""')}"`]);
  }
}

function stopInfrastructure() {
  for (const service of started.reverse()) {
    log(`stopping ${service.name}`);
    service.stop();
  }
}

// 4. start --------------------------------------------------------------------------------
function adminCredentials() {
  if (process.env.PARLEY_ADMIN_USERNAME && process.env.PARLEY_ADMIN_PASSWORD) {
    return { username: process.env.PARLEY_ADMIN_USERNAME, password: undefined, generated: false };
  }
  const file = join(STATE, 'admin.json');
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    return { username: saved.username, password: saved.password, generated: false };
  }
  const credentials = { username: 'admin', password: randomBytes(15).toString('base64url') };
  mkdirSync(STATE, { recursive: true });
  writeFileSync(file, `${JSON.stringify(credentials, null, 2)}\n`);
  chmodSync(file, 0o600);
  return { ...credentials, generated: true };
}

async function ready(port) {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/readyz`);
    return response.status === 200;
  } catch {
    return false;
  }
}

/** The first administrator is created only when none exists: check the printed credentials really work. */
async function canLogIn(gateway, admin) {
  try {
    const response = await fetch(`${gateway}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: admin.username, password: admin.password }),
    });
    return response.status === 200;
  } catch {
    return true;
  }
}

async function start() {
  const admin = adminCredentials();
  const children = [];
  let stopping = false;

  const stopAll = async (code) => {
    if (stopping) return;
    stopping = true;
    log('stopping the services');
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    const deadline = Date.now() + 10_000;
    while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline)
      await sleep(100);
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    stopInfrastructure();
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));
  // `npm start` killed on its own (a script's `kill %1`) does not pass the signal on: follow it.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) void stopAll(0);
  }, 1000).unref();

  const env = childEnv({
    ...(admin.password ? { PARLEY_ADMIN_USERNAME: admin.username, PARLEY_ADMIN_PASSWORD: admin.password } : {}),
  });
  // A service that dies is started again after a pause that doubles with each quick death (up to
  // 30 s) and resets once it has run for a minute; the others keep running meanwhile.
  const launch = (service, restarts = 0) => {
    const child = spawn(join(BIN, 'node'), [...SERVICE_PROCESS.node, 'dist/main.js'], {
      cwd: join(ROOT, 'services', service.name),
      env: { ...env, ...SERVICE_PROCESS.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const startedAt = Date.now();
    const prefix = `[${service.name}] `;
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream.on('data', (chunk) => {
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) process.stdout.write(`${prefix}${line}\n`);
      });
    }
    child.on('exit', (code, signal) => {
      if (stopping) return;
      // 78 (EX_CONFIG): the service refused its configuration and said why above; a restart cannot help.
      if (code === 78) {
        log(`${service.name} stopped: its configuration is wrong (printed above); fix it and start again`);
        void stopAll(1);
        return;
      }
      const ranLong = Date.now() - startedAt > 60_000;
      const attempt = ranLong ? 0 : restarts;
      const delay = Math.min(30_000, 1000 * 2 ** attempt);
      log(
        `${service.name} stopped unexpectedly (${signal ?? `exit ${code}`}); starting it again in ${delay / 1000} s` +
          (attempt > 0 ? ` (restart ${attempt + 1} in a row)` : ''),
      );
      setTimeout(() => {
        if (stopping) return;
        children[children.indexOf(child)] = launch(service, attempt + 1);
      }, delay);
    });
    return child;
  };
  for (const service of SERVICES) children.push(launch(service));

  const ports = SERVICES.map((s) => ({ ...s, port: Number(process.env[s.portVar] ?? s.port) }));
  const deadline = Date.now() + 120_000;
  let waiting = ports;
  while (waiting.length > 0) {
    if (Date.now() > deadline) {
      log(`not ready after 120 s: ${waiting.map((s) => s.name).join(', ')}`);
      await stopAll(1);
      return;
    }
    await sleep(500);
    const answers = await Promise.all(waiting.map((s) => ready(s.port)));
    waiting = waiting.filter((_, i) => !answers[i]);
  }

  const gateway = `http://127.0.0.1:${ports.find((s) => s.name === 'gateway')?.port}`;
  const stale = Boolean(admin.password) && !(await canLogIn(gateway, admin));
  if (stale) {
    log(
      `an administrator already exists in this database and the password in .parley/admin.json is not theirs: ` +
        `log in with that administrator's password, or set PARLEY_ADMIN_USERNAME/PARLEY_ADMIN_PASSWORD for a fresh database`,
    );
  }
  // A password that does not log in is not printed as if it did.
  const shown = admin.generated && !stale;
  const password = stale
    ? "(the existing administrator's; not the one in .parley/admin.json)"
    : admin.password
      ? admin.generated
        ? admin.password
        : '(see .parley/admin.json)'
      : '(PARLEY_ADMIN_PASSWORD)';
  process.stdout.write(`
Parley is running.

  Console  ${gateway}/console   (sign in with a Parley user)
  API      ${gateway}/api/v1
  Docs     ${gateway}/docs   (OpenAPI: ${gateway}/openapi.json)

  Log in as the administrator:
    curl -s ${gateway}/api/v1/auth/login -H 'content-type: application/json' \\
      -d '{"username":"${admin.username}","password":"${shown ? admin.password : '<password>'}"}'
  Username: ${admin.username}
  Password: ${password}${shown ? '\n  (generated once; kept in .parley/admin.json)' : ''}

Ctrl-C stops everything it started.
`);
}

// 5. test ---------------------------------------------------------------------------------
function testAll(jestArgs) {
  const bin = (name) => join(ROOT, 'node_modules', '.bin', name);
  const steps = [
    ['type-check', () => typecheck(bin('tsc'))],
    ['lint', () => run(bin('eslint'), ['.'])],
    ['format', () => run(bin('prettier'), ['--check', '.'])],
  ];
  for (const [name, step] of steps) {
    log(`-- ${name}`);
    const status = step();
    if (status !== 0) {
      log(`${name} failed`);
      return status;
    }
  }
  const total = { passed: 0, failed: 0, skipped: 0 };
  let status = 0;
  for (const [name, args] of testPhases(jestArgs)) {
    log(`-- ${name}`);
    status = jest(bin('jest'), args, total);
    if (status !== 0) {
      log(`${name} failed`);
      break;
    }
  }
  // The one line CI reads: every test that ran, in every run.
  const { passed, failed, skipped } = total;
  process.stdout.write(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  return status;
}

/** Jest projects that start and kill infrastructure of their own: run once every other suite passed. */
const SLOW_PROJECTS = ['fault'];

/**
 * With no arguments, the fast projects first, then the slow ones; with arguments (a path, a
 * project), one run of what they select.
 */
function testPhases(jestArgs) {
  if (jestArgs.length > 0) return [['tests', jestArgs]];
  const names = createRequire(import.meta.url)(join(ROOT, 'jest.config.js')).projects.map((p) => p.displayName);
  const fast = names.filter((n) => !SLOW_PROJECTS.includes(n));
  const slow = names.filter((n) => SLOW_PROJECTS.includes(n));
  return [
    ['tests', ['--selectProjects', ...fast]],
    ...(slow.length ? [[`slow tests (${slow.join(', ')})`, ['--selectProjects', ...slow]]] : []),
  ];
}

/** Runs Jest, prints each suite's duration and the run's own, and adds its counts to `total`. */
function jest(binary, args, total) {
  mkdirSync(STATE, { recursive: true });
  const results = join(STATE, 'jest-results.json');
  rmSync(results, { force: true });
  const started = Date.now();
  const status = run(binary, ['--ci', '--json', `--outputFile=${results}`, ...args], {
    env: childEnv({ NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --experimental-vm-modules`.trim() }),
  });
  if (existsSync(results)) {
    const summary = JSON.parse(readFileSync(results, 'utf8'));
    const skipped = summary.numPendingTests + summary.numTodoTests;
    process.stdout.write('suite durations:\n');
    const suites = summary.testResults
      .map((r) => ({ name: r.name.slice(ROOT.length + 1), seconds: (r.endTime - r.startTime) / 1000 }))
      .sort((a, b) => b.seconds - a.seconds);
    for (const suite of suites) process.stdout.write(`  ${suite.seconds.toFixed(1).padStart(6)} s  ${suite.name}\n`);
    process.stdout.write(
      `this run: ${summary.numPassedTests} passed, ${summary.numFailedTests} failed` +
        `${skipped ? `, ${skipped} skipped` : ''} in ${Math.round((Date.now() - started) / 1000)} s\n`,
    );
    total.passed += summary.numPassedTests;
    total.failed += summary.numFailedTests;
    total.skipped += skipped;
  }
  return status;
}

function typecheck(tsc) {
  const projects = ['libs', 'services']
    .flatMap((d) => readdirSync(join(ROOT, d)).map((p) => join(d, p, 'tsconfig.json')))
    .concat(['tsconfig.json', join('bench', 'tsconfig.json')])
    .filter((p) => existsSync(join(ROOT, p)));
  for (const project of projects) {
    const status = run(tsc, ['-p', project, '--noEmit']);
    if (status !== 0) return status;
  }
  return 0;
}

// 6. backup and restore -------------------------------------------------------------------
/**
 * Runs `main.js backup|restore` of a service with a database (any would do: each knows every
 * schema); a file name is taken relative to where this was started.
 */
function operation(command, args) {
  const resolved = args.map((arg, i) =>
    arg.startsWith('-') || args[i - 1] === '--schema' ? arg : resolve(process.cwd(), arg),
  );
  return run(join(BIN, 'node'), ['dist/main.js', command, ...resolved], {
    cwd: join(ROOT, 'services', 'session'),
  });
}

// -----------------------------------------------------------------------------------------
async function main() {
  const [command = 'start', ...rest] = process.argv.slice(2);
  const commands = ['start', 'test', 'check', 'backup', 'restore'];
  if (!commands.includes(command)) fail(`unknown command "${command}" (${commands.join(', ')})`);
  ensureToolchain();
  ensureDependencies();
  build();
  await ensureInfrastructure();
  if (command === 'check') {
    log('toolchain, dependencies, build and infrastructure are ready');
    stopInfrastructure();
    return;
  }
  if (command === 'test') {
    const status = testAll(rest);
    stopInfrastructure();
    process.exit(status);
  }
  if (command === 'backup' || command === 'restore') {
    const status = operation(command, rest);
    stopInfrastructure();
    process.exit(status);
  }
  await start();
}

main().catch((error) => fail(error instanceof Error ? (error.stack ?? error.message) : String(error)));
