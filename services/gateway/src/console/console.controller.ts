import { Controller, Get, Inject, Req, Res, type OnModuleInit } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join, relative, resolve } from 'node:path';
import { ParleyError } from '@parley/contracts';
import { LOGGER, Public, type Logger } from '@parley/kit';
import { GATEWAY_CONFIG, type GatewayConfig } from '../config';

/**
 * The console's pages: no inline script and no eval, so scripts come only from here; it calls
 * nothing but this origin's API, is never framed, and shows media as links rather than loading them.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'application/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json; charset=utf-8',
};

interface Asset {
  body: Buffer;
  type: string;
}

/** Where the built console is: CONSOLE_DIR, else beside the gateway in the image, else the workspace's build. */
export function consoleDir(configured: string | undefined): string | undefined {
  const candidates = configured
    ? [resolve(configured)]
    : [join(__dirname, '..', '..', 'console'), join(__dirname, '..', '..', '..', '..', 'apps', 'console', 'dist')];
  return candidates.find((dir) => existsSync(join(dir, 'index.html')));
}

function readTree(root: string, dir = root, out = new Map<string, Asset>()): Map<string, Asset> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) readTree(root, path, out);
    else {
      const type = TYPES[extname(name)];
      if (type) out.set(relative(root, path).split('\\').join('/'), { body: readFileSync(path), type });
    }
  }
  return out;
}

/** The path as text; one that does not decode is no file, so it is a page (index.html). */
function decoded(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return '';
  }
}

/**
 * `/console` and `/console/*`: the console's built files (public; every call the console makes
 * goes through `/api/v1` with the user's token). Paths that are not files answer index.html, the
 * single page routing itself. Not an API route: it has no `@ApiRoute` and is not in /openapi.json.
 */
@Controller()
@Public()
export class ConsoleController implements OnModuleInit {
  private files = new Map<string, Asset>();

  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onModuleInit(): void {
    const dir = consoleDir(this.config.CONSOLE_DIR);
    if (!dir) {
      this.logger.warn('the console is not built: /console answers 404 (pnpm -r run build builds it)');
      return;
    }
    this.files = readTree(dir);
  }

  @Get('console')
  async index(@Res() reply: FastifyReply) {
    await this.send(reply, 'index.html');
  }

  @Get('console/*')
  async file(@Req() request: FastifyRequest, @Res() reply: FastifyReply) {
    const path = decoded(request.url.split('?')[0].slice('/console/'.length));
    if (this.files.has(path) && path !== 'index.html') return this.send(reply, path);
    // A missing built file is a 404; any other path is one of the console's pages.
    if (path.startsWith('assets/')) throw new ParleyError('NOT_FOUND', `no console asset ${path}`);
    await this.send(reply, 'index.html');
  }

  private async send(reply: FastifyReply, path: string) {
    const asset = this.files.get(path);
    if (!asset) throw new ParleyError('NOT_FOUND', 'the console is not built on this gateway');
    await reply
      .header('content-type', asset.type)
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('cache-control', path.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache')
      .send(asset.body);
  }
}
