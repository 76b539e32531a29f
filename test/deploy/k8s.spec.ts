import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT, SERVICES, type ServiceName } from '../support/stack';

/**
 * The Kubernetes manifests an operator applies (deploy/k8s, docs/operations.md): every object
 * valid against the API's schemas (`kubernetes-models`), the kustomization built by
 * `kubectl kustomize`, and what the schemas cannot know checked against the code: probes on
 * the port each service listens on, the environment's names, disruption budgets, autoscalers,
 * the NATS cluster.
 */
type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
};

const K8S = join(ROOT, 'deploy', 'k8s');
const parse = (text: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJSON() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);

function kustomize(): K8sObject[] {
  const built = spawnSync('kubectl', ['kustomize', K8S], { encoding: 'utf8' });
  if (built.error) {
    throw new Error(`kubectl is needed to build deploy/k8s (kubectl kustomize): ${built.error.message}`);
  }
  if (built.status !== 0) throw new Error(`kubectl kustomize deploy/k8s failed:\n${built.stderr}`);
  return parse(built.stdout);
}

function validate(objects: K8sObject[]): { kind: string; name: string; error: string | null }[] {
  const run = spawnSync(process.execPath, [join(ROOT, 'test', 'deploy', 'validate-k8s.mjs')], {
    input: JSON.stringify(objects),
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  if (run.status !== 0) throw new Error(`validate-k8s.mjs failed:\n${run.stderr}`);
  return JSON.parse(run.stdout);
}

/** Source files of the code (not tests): the environment variables it reads appear there. */
function sourceText(): string {
  const texts: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory() && !['node_modules', 'dist', 'test'].includes(entry.name)) walk(path);
      else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.spec.ts')) {
        texts.push(readFileSync(path, 'utf8'));
      }
    }
  };
  for (const top of ['libs', 'services']) walk(join(ROOT, top));
  return texts.join('\n');
}

const PORT_VARIABLE: Record<ServiceName, string> = {
  gateway: 'GATEWAY_PORT',
  access: 'ACCESS_HTTP_PORT',
  session: 'SESSION_HTTP_PORT',
  message: 'MESSAGE_HTTP_PORT',
  usage: 'USAGE_HTTP_PORT',
};

describe('Kubernetes manifests (deploy/k8s)', () => {
  const built = kustomize();
  const of = (kind: string) => built.filter((o) => o.kind === kind);
  const named = (kind: string, name: string) => {
    const found = built.find((o) => o.kind === kind && o.metadata.name === name);
    if (!found) throw new Error(`no ${kind} ${name}`);
    return found;
  };
  const operations = readdirSync(join(K8S, 'operations'))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parse(readFileSync(join(K8S, 'operations', f), 'utf8')));

  it('builds with kubectl kustomize, in the namespace parley', () => {
    expect(built.length).toBeGreaterThan(15);
    for (const o of built.filter((x) => x.kind !== 'Namespace')) {
      expect((o.metadata as { namespace?: string }).namespace).toBe('parley');
    }
  });

  it("validates every object, built and in the optional operations' files, against the Kubernetes schemas", () => {
    const results = validate([...built, ...operations]);
    expect(results.length).toBe(built.length + operations.length);
    expect(results.filter((r) => r.error !== null)).toEqual([]);
    // The validator does refuse: a Deployment without a selector.
    const [bad] = validate([
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { template: {} } },
    ]);
    expect(bad.error).toMatch(/selector/);
  });

  it.each(SERVICES)('%s: two replicas, probes on the port it listens on, resources, its own NATS creds', (name) => {
    const deployment = named('Deployment', name);
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.strategy.rollingUpdate).toEqual({ maxUnavailable: 0, maxSurge: 1 });
    const pod = deployment.spec.template;
    expect(pod.metadata.labels['app.kubernetes.io/name']).toBe(name);
    const [container] = pod.spec.containers;
    const env = Object.fromEntries((container.env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
    const port = Number(env[PORT_VARIABLE[name]]);
    expect(container.ports).toEqual([{ name: 'http', containerPort: port }]);
    const target = (p: { httpGet: { port: string | number } }) =>
      p.httpGet.port === 'http' ? port : Number(p.httpGet.port);
    expect([container.startupProbe.httpGet.path, target(container.startupProbe)]).toEqual(['/healthz', port]);
    expect([container.readinessProbe.httpGet.path, target(container.readinessProbe)]).toEqual(['/readyz', port]);
    expect([container.livenessProbe.httpGet.path, target(container.livenessProbe)]).toEqual(['/healthz', port]);
    expect(pod.metadata.annotations['prometheus.io/port']).toBe(String(port));
    expect(container.resources.requests).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
    expect(container.resources.limits.memory).toEqual(expect.any(String));
    // Its own creds file only, where NATS_CREDS says.
    const creds = pod.spec.volumes.find((v: { name: string }) => v.name === 'nats-creds');
    expect(creds.secret.items).toEqual([{ key: `${name}.creds`, path: `${name}.creds` }]);
    expect(env.NATS_CREDS).toBe(`/etc/parley/nats/${name}.creds`);
    // The Service sends to that port.
    expect(named('Service', name).spec.ports).toEqual([{ name: 'http', port, targetPort: 'http' }]);
  });

  it('serves the probed paths: the health controller answers /healthz and /readyz', () => {
    const controller = readFileSync(join(ROOT, 'libs', 'kit', 'src', 'nest', 'health.controller.ts'), 'utf8');
    expect(controller).toContain(`@Get('healthz')`);
    expect(controller).toContain(`@Get('readyz')`);
    // Each service listens on the port variable the manifest sets.
    for (const name of SERVICES) {
      const main = readFileSync(join(ROOT, 'services', name, 'src', 'main.ts'), 'utf8');
      expect(main).toContain(`config.${PORT_VARIABLE[name]}`);
    }
  });

  it('keeps a disruption budget for every Deployment and for NATS, selecting their pods', () => {
    const budgets = of('PodDisruptionBudget');
    for (const workload of [...of('Deployment'), ...of('StatefulSet')]) {
      const labels = workload.spec.template.metadata.labels as Record<string, string>;
      const budget = budgets.find((b) =>
        Object.entries(b.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => labels[k] === v),
      );
      expect(budget).toBeDefined();
      const keeps = budget?.spec.minAvailable ?? workload.spec.replicas - budget?.spec.maxUnavailable;
      expect(keeps).toBeGreaterThanOrEqual(workload.kind === 'StatefulSet' ? 2 : 1);
    }
  });

  it('scales the gateway and the message service on CPU, from two replicas', () => {
    const autoscalers = of('HorizontalPodAutoscaler');
    expect(autoscalers.map((a) => a.metadata.name).sort()).toEqual(['gateway', 'message']);
    for (const a of autoscalers) {
      expect(a.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: a.metadata.name });
      expect(a.spec.minReplicas).toBe(2);
      expect(a.spec.maxReplicas).toBeGreaterThan(2);
      expect(a.spec.metrics[0].resource.name).toBe('cpu');
      // Utilization is of the request: the container must have one.
      expect(
        named('Deployment', a.metadata.name).spec.template.spec.containers[0].resources.requests.cpu,
      ).toBeDefined();
    }
  });

  it('runs NATS as three JetStream nodes in operator mode, and the services know all three', () => {
    const nats = named('StatefulSet', 'nats');
    expect(nats.spec.replicas).toBe(3);
    const [container] = nats.spec.template.spec.containers;
    expect(container.args).toEqual(['-c', '/etc/nats/nats.conf', '-m', '8222']);
    expect(nats.spec.template.spec.volumes[0].secret.secretName).toBe('parley-nats-server');
    expect(container.readinessProbe.httpGet.path).toBe('/healthz?js-enabled-only=true');
    const config = named('ConfigMap', 'parley-config').data ?? {};
    expect(config.JETSTREAM_REPLICAS).toBe('3');
    expect(config.NATS_URL.split(',')).toEqual([0, 1, 2].map((i) => `nats://nats-${i}.nats:4222`));
    // The init output it is made from is operator mode with a cluster block (deploy/nats/init).
    const init = readFileSync(join(ROOT, 'deploy', 'nats', 'init.mjs'), 'utf8');
    expect(init).toContain('operator');
    expect(init).toContain('server_name: $SERVER_NAME');
  });

  it('names only environment variables that the code reads and docs/configuration.md explains', () => {
    const documented = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
    const code = sourceText();
    const names = new Set<string>();
    for (const o of [...built, ...operations]) {
      if (o.kind === 'ConfigMap' || o.kind === 'Secret') {
        for (const key of Object.keys({ ...o.data, ...o.stringData })) names.add(key);
      }
      const pod = o.kind === 'CronJob' ? o.spec.jobTemplate.spec.template : o.spec?.template;
      // Parley's containers (NATS's own read SERVER_NAME).
      for (const c of pod?.spec?.containers ?? []) {
        if (String(c.image).startsWith('parley/')) for (const e of c.env ?? []) names.add(e.name);
      }
    }
    // The account secret made by deploy/nats/init (access's envFrom).
    names.add('NATS_ACCOUNT_PUBLIC_KEY').add('NATS_ACCOUNT_SIGNING_SEED');
    expect(names.size).toBeGreaterThan(10);
    const undocumented = [...names].filter((n) => !documented.includes(`\`${n}\``));
    const unread = [...names].filter((n) => !code.includes(n));
    expect({ undocumented, unread }).toEqual({ undocumented: [], unread: [] });
  });

  it('builds images with the PostgreSQL client of the server compose runs (backup and restore)', () => {
    const dockerfile = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
    const major = /ARG PG_MAJOR=(\d+)/.exec(dockerfile)?.[1];
    expect(dockerfile).toContain('postgresql-client-${PG_MAJOR}');
    const compose = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
    expect(/image: postgres:(\d+)\./.exec(compose)?.[1]).toBe(major);
  });
});
