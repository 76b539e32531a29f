import { Controller, Get, Inject, Param, Res, type OnApplicationBootstrap, type Type } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import type { FastifyReply } from 'fastify';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ParleyError } from '@parley/contracts';
import { Public } from '@parley/kit';
import { buildOpenApi } from './openapi';

const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'application/javascript; charset=utf-8',
};

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#ui', deepLinking: true, persistAuthorization: true });</script>
</body></html>`;

/** `/openapi.json` (OpenAPI 3.1, generated from the routes) and `/docs` (Swagger UI, served locally). */
@Controller()
@Public()
export class DocsController implements OnApplicationBootstrap {
  private document: unknown;
  private readonly assetDir: string;

  constructor(@Inject(DiscoveryService) private readonly discovery: DiscoveryService) {
    this.assetDir = join(require.resolve('swagger-ui-dist/package.json'), '..');
  }

  onApplicationBootstrap(): void {
    // Built, and every route's schemas checked against its handler, before the gateway listens.
    this.document = buildOpenApi(
      this.discovery.getControllers().flatMap((wrapper) => (wrapper.metatype ? [wrapper.metatype as Type] : [])),
    );
  }

  @Get('openapi.json')
  openapi() {
    return this.document;
  }

  @Get('docs')
  async page(@Res() reply: FastifyReply) {
    await reply.header('content-type', 'text/html; charset=utf-8').send(PAGE);
  }

  @Get('docs/assets/:file')
  async asset(@Param('file') file: string, @Res() reply: FastifyReply) {
    const type = ASSETS[file];
    if (!type) throw new ParleyError('NOT_FOUND', `no asset ${file}`);
    await reply
      .header('content-type', type)
      .header('cache-control', 'public, max-age=86400')
      .send(readFileSync(join(this.assetDir, file)));
  }
}
