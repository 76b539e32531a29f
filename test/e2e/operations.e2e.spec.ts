import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { join } from 'node:path';
import { ROOT, SERVICE_PROCESS } from '../support/stack';
import { api } from '../support/http';

const services = ['gateway', 'access', 'session', 'message', 'usage'];
const port = (name: string) => process.env[`E2E_${name.toUpperCase()}_PORT`];

describe('operations (e2e)', () => {
  it.each(services)('%s answers /healthz, /readyz and /metrics without credentials', async (name) => {
    const base = `http://127.0.0.1:${port(name)}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    const report = (await ready.json()) as { checks: Record<string, { ok: boolean }> };
    expect(report.checks.nats.ok).toBe(true);
    expect(report.checks.redis.ok).toBe(true);
    if (name !== 'gateway') expect(report.checks.migrations.ok).toBe(true);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain(`parley_http_requests_total`);
    expect(metrics).toContain(`service="${name}"`);
  });

  it('counts gateway requests per route and NATS requests per subject', async () => {
    await api('GET', '/api/v1/me');
    await api('POST', '/api/v1/auth/login', { body: { username: 'nobody-here', password: 'wrong-password' } });
    const gateway = await (await fetch(`http://127.0.0.1:${port('gateway')}/metrics`)).text();
    expect(gateway).toMatch(/parley_http_requests_total\{[^}]*route="\/api\/v1\/me"[^}]*status="401"/);
    const access = await (await fetch(`http://127.0.0.1:${port('access')}/metrics`)).text();
    expect(access).toMatch(/parley_nats_requests_total\{[^}]*subject="access.auth.login"/);
  });

  it('publishes an OpenAPI 3.1 document describing every route, and interactive docs', async () => {
    const doc = await api('GET', '/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe('3.1.0');
    const routes = Object.entries(doc.body.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(routes.sort()).toEqual(
      [
        'POST /api/v1/auth/login',
        'POST /api/v1/auth/refresh',
        'POST /api/v1/auth/logout',
        'GET /api/v1/me',
        'POST /api/v1/users',
        'GET /api/v1/users',
        'PATCH /api/v1/users/{id}',
        'POST /api/v1/sessions',
        'GET /api/v1/sessions',
        'GET /api/v1/sessions/{id}',
        'PATCH /api/v1/sessions/{id}',
        'DELETE /api/v1/sessions/{id}',
        'PUT /api/v1/me/password',
        'DELETE /api/v1/users/{id}',
        'PUT /api/v1/users/{id}/roles/{role_id}',
        'DELETE /api/v1/users/{id}/roles/{role_id}',
        'POST /api/v1/groups',
        'GET /api/v1/groups',
        'PATCH /api/v1/groups/{id}',
        'DELETE /api/v1/groups/{id}',
        'GET /api/v1/groups/{id}/members',
        'PUT /api/v1/groups/{id}/members/{user_id}',
        'DELETE /api/v1/groups/{id}/members/{user_id}',
        'POST /api/v1/roles',
        'GET /api/v1/roles',
        'GET /api/v1/roles/{id}/grants',
        'PUT /api/v1/roles/{id}/grants',
        'POST /api/v1/bots',
        'GET /api/v1/bots',
        'GET /api/v1/bots/{id}',
        'PATCH /api/v1/bots/{id}',
        'DELETE /api/v1/bots/{id}',
        'POST /api/v1/bots/{id}/keys',
        'GET /api/v1/bots/{id}/keys',
        'DELETE /api/v1/bots/{id}/keys/{key_id}',
        'POST /api/v1/bots/{id}/nats-credentials',
        'POST /api/v1/sessions/{id}/messages',
        'POST /api/v1/sessions/{id}/messages/batch',
        'GET /api/v1/sessions/{id}/messages',
        'GET /api/v1/sessions/{id}/messages/latest',
        'PUT /api/v1/messages/{id}/feedback',
        'PATCH /api/v1/messages/{id}',
        'GET /api/v1/messages/search',
        'GET /api/v1/sessions/{id}/export',
        'GET /api/v1/sessions/{id}/stream',
        'POST /api/v1/usage/events',
        'GET /api/v1/usage/summary',
        'GET /api/v1/usage/records',
        'PUT /api/v1/usage/prices',
        'GET /api/v1/usage/prices',
        'PUT /api/v1/bots/{id}/budget',
        'GET /api/v1/bots/{id}/quota',
        'GET /api/v1/bots/{id}/activity',
        'POST /api/v1/bots/{id}/activity',
      ].sort(),
    );
    const create = doc.body.paths['/api/v1/sessions'].post;
    expect(create.requestBody.content['application/json'].schema.properties.title).toBeDefined();
    expect(create.responses['400'].content['application/problem+json']).toBeDefined();
    expect(doc.body.components.schemas.Problem.properties.code.enum).toContain('VALIDATION_FAILED');

    const page = await fetch(`${process.env.E2E_GATEWAY_URL}/docs`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('swagger-ui-bundle.js');
    expect((await fetch(`${process.env.E2E_GATEWAY_URL}/docs/assets/swagger-ui-bundle.js`)).status).toBe(200);
  });

  it('starts every service process alike: npm start, the test stack, the image, compose and pnpm start', () => {
    // scripts/service-process.json is read by npm start and test/support/stack.ts; the others
    // repeat it (docs/configuration.md, "The service process").
    const command = ['node', ...SERVICE_PROCESS.node, 'dist/main.js'];
    const env = Object.entries(SERVICE_PROCESS.env).map(([name, value]) => `${name}=${value}`);
    const dockerfile = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
    expect(JSON.parse(/^CMD (.*)$/m.exec(dockerfile)?.[1] ?? 'null')).toEqual(command);
    const imageEnv = /^ENV (.*)$/gm;
    const declared = [...dockerfile.matchAll(imageEnv)].flatMap((m) => m[1].split(/\s+/));
    for (const entry of env) expect(declared).toContain(entry);
    const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { command?: string[] }>;
    };
    // The access service's command is its own (it exports the NATS account first); the others use the image's.
    expect(compose.services.access.command?.join(' ')).toContain(`exec ${command.join(' ')}`);
    for (const name of services.filter((s) => s !== 'access')) expect(compose.services[name].command).toBeUndefined();
    for (const name of services) {
      const pkg = JSON.parse(readFileSync(join(ROOT, 'services', name, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      };
      expect(pkg.scripts.start).toBe([...env, ...command].join(' '));
    }
  });

  it('keeps a valid compose file with the infrastructure, the five services and the observability stack', () => {
    const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { environment?: Record<string, string>; ports?: string[] }>;
    };
    const names = Object.keys(compose.services);
    for (const name of [
      'postgres',
      'nats',
      'redis',
      ...services,
      'otel-collector',
      'jaeger',
      'prometheus',
      'grafana',
    ]) {
      expect(names).toContain(name);
    }
    expect(compose.services.gateway.environment?.GATEWAY_PORT).toBe('8080');
    expect(compose.services.access.environment?.PARLEY_ADMIN_USERNAME).toBeDefined();
    const dockerCompose = spawnSync('docker-compose', ['-f', join(ROOT, 'docker-compose.yml'), 'config', '-q'], {
      encoding: 'utf8',
    });
    // A check that cannot run fails: .ci/run installs Debian's docker-compose when it is missing.
    expect(dockerCompose.error).toBeUndefined();
    expect(dockerCompose.stderr).toBe('');
    expect(dockerCompose.status).toBe(0);

    // As compose resolves it with nothing set: no administrator password of its own, and only
    // the gateway published beyond 127.0.0.1.
    const env = { ...process.env };
    delete env.PARLEY_ADMIN_USERNAME;
    delete env.PARLEY_ADMIN_PASSWORD;
    const resolved = spawnSync('docker-compose', ['-f', join(ROOT, 'docker-compose.yml'), 'config'], {
      encoding: 'utf8',
      env,
    });
    expect(resolved.status).toBe(0);
    const config = parseYaml(resolved.stdout) as {
      services: Record<string, { environment?: Record<string, string>; ports?: (string | { published: number })[] }>;
    };
    expect(config.services.access.environment?.PARLEY_ADMIN_PASSWORD).toBe('');
    const exposed: string[] = [];
    for (const [name, service] of Object.entries(config.services)) {
      for (const published of service.ports ?? []) {
        if (typeof published !== 'string' || !published.startsWith('127.0.0.1:')) exposed.push(name);
      }
    }
    expect(exposed).toEqual(['gateway']);
  });
});
