import 'reflect-metadata';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { Controller, Get } from '@nestjs/common';
import { IdParamSchema, PageQuerySchema } from '@parley/contracts';
import { GATEWAY_CONTROLLERS } from '../controllers';
import { ApiRoute, ValidParams, ValidQuery } from '../http/api-route';
import { buildOpenApi } from './openapi';

const REDOCLY = resolve(__dirname, '../../../../node_modules/.bin/redocly');

interface LintReport {
  totals: { errors: number; warnings: number };
  problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
}

describe('the OpenAPI document', () => {
  const document = buildOpenApi(GATEWAY_CONTROLLERS) as {
    paths: Record<string, Record<string, { operationId: string; requestBody?: { required: boolean } }>>;
  };

  it('lints with Redocly’s recommended rules without an error', () => {
    // The pinned @redocly/cli is a devDependency: without it this fails, it never skips.
    expect(existsSync(REDOCLY)).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'parley-openapi-'));
    try {
      const file = join(dir, 'openapi.json');
      writeFileSync(file, JSON.stringify(document, null, 2));
      const run = spawnSync(REDOCLY, ['lint', '--extends=recommended', '--format=json', file], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          ...process.env,
          // The Node running the tests runs the CLI too; no telemetry, no update check.
          PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
          REDOCLY_TELEMETRY: 'off',
          REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true',
        },
      });
      expect(run.error).toBeUndefined();
      const report = JSON.parse(run.stdout) as LintReport;
      const errors = report.problems
        .filter((p) => p.severity === 'error')
        .map((p) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`);
      expect(errors).toEqual([]);
      expect(report.totals.errors).toBe(0);
      expect(run.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names every operation once and marks a body optional only where the route says so', () => {
    const operations = Object.values(document.paths).flatMap((methods) => Object.values(methods));
    const ids = operations.map((o) => o.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining(['Sessions.create', 'Messages.search', 'Bots.reportActivity']));
    expect(document.paths['/api/v1/sessions'].post.requestBody?.required).toBe(true);
    expect(document.paths['/api/v1/bots/{id}/keys'].post.requestBody?.required).toBe(false);
  });

  it('refuses a route whose handler and @ApiRoute disagree about its inputs', () => {
    const route = { summary: 'x', tags: ['x'], status: 200, response: null };

    @Controller('unused')
    class DeclaredButNotTaken {
      @Get(':id')
      @ApiRoute({ ...route, params: IdParamSchema, query: PageQuerySchema })
      get(@ValidParams() _params: unknown) {}
    }
    expect(() => buildOpenApi([DeclaredButNotTaken])).toThrow(/declares a query schema that it never takes/);

    @Controller('unused')
    class TakenButNotDeclared {
      @Get()
      @ApiRoute(route)
      list(@ValidQuery() _query: unknown) {}
    }
    expect(() => buildOpenApi([TakenButNotDeclared])).toThrow(/declares no query schema/);
  });
});
