import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { parse as parseYaml } from 'yaml';
import { ROOT } from '../support/stack';

/**
 * The alert rules (deploy/prometheus/alerts.yml): each one parses as PromQL, asks only for
 * metrics the services export, has a severity and a summary, and is explained in
 * docs/operations.md.
 */
interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const rules = (
  parseYaml(readFileSync(join(ROOT, 'deploy', 'prometheus', 'alerts.yml'), 'utf8')) as {
    groups: { rules: Rule[] }[];
  }
).groups.flatMap((g) => g.rules);

/** Every metric name the code registers (`name: 'parley_…'`). */
function exported(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory() && !['node_modules', 'dist'].includes(entry.name)) walk(path);
      else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.spec.ts')) {
        for (const m of readFileSync(path, 'utf8').matchAll(/name: '(parley_[a-z_]+)'/g)) names.add(m[1]);
      }
    }
  };
  for (const top of ['libs', 'services']) walk(join(ROOT, top));
  return names;
}

/** Syntax errors in a PromQL expression, with where they are. */
function syntaxErrors(expr: string): string[] {
  const errors: string[] = [];
  parser.parse(expr).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(`at ${node.from}: ${JSON.stringify(expr.slice(node.from, node.from + 20))}`);
    },
  });
  return errors;
}

describe('alert rules (deploy/prometheus/alerts.yml)', () => {
  const metrics = exported();
  const operations = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');

  it('tells a broken expression from a good one', () => {
    expect(syntaxErrors('sum by (service) (rate(parley_http_requests_total[5m])) > 0')).toEqual([]);
    expect(syntaxErrors('sum by (service (rate(parley_http_requests_total[5m])')).not.toEqual([]);
    expect(metrics.has('parley_http_requests_total')).toBe(true);
  });

  it.each(rules.map((r) => [r.alert, r] as const))(
    '%s parses, uses exported metrics, and is explained',
    (name, rule) => {
      expect(syntaxErrors(rule.expr)).toEqual([]);
      const used = [...rule.expr.matchAll(/\b(parley_[a-z_]+)/g)].map((m) => m[1]);
      const unknown = used.filter((m) => !metrics.has(m) && !metrics.has(m.replace(/_(bucket|sum|count)$/, '')));
      expect(unknown).toEqual([]);
      expect(['page', 'warn']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary).toEqual(expect.any(String));
      expect(operations).toContain(`\`${name}\``);
    },
  );

  it('scrapes the five services, and loads these rules', () => {
    const config = parseYaml(readFileSync(join(ROOT, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; metrics_path: string; static_configs: { targets: string[] }[] }[];
    };
    expect(config.rule_files).toEqual(['alerts.yml']);
    const parley = config.scrape_configs.find((j) => j.job_name === 'parley');
    expect(parley?.metrics_path).toBe('/metrics');
    expect(parley?.static_configs[0].targets.map((t) => t.split(':')[0]).sort()).toEqual(
      ['access', 'gateway', 'message', 'session', 'usage'].sort(),
    );
    // Every job scraped answers Prometheus's format (NATS's monitoring port answers JSON).
    for (const job of config.scrape_configs) expect(job.metrics_path).toBe('/metrics');
  });
});
