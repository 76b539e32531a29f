import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { MAX_WIRE_JSON_DEPTH, ParleyError } from '@parley/contracts';
import { BODY_LIMIT_BYTES, nestsDeeperThan } from '@parley/kit';

/**
 * How deeply a request body may nest arrays and objects: the same limit as a NATS payload, so
 * a body the gateway accepts can always travel on. (Inside `metadata`, `state` and `media` the
 * schemas allow less.)
 */
export const MAX_BODY_DEPTH = MAX_WIRE_JSON_DEPTH;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function bodyError(code: 'BAD_REQUEST' | 'VALIDATION_FAILED', message: string): ParleyError {
  return new ParleyError(code, `body: ${message}`, { errors: [{ field: 'body', message }] });
}

/** Only on the failure path: the parser's reason, or the one thing the secure parser adds. */
function whyNotJson(text: string): string {
  try {
    JSON.parse(text);
    return 'must not hold a __proto__ or constructor.prototype key';
  } catch (error) {
    return `is not valid JSON (${error instanceof Error ? error.message : String(error)})`;
  }
}

/**
 * The gateway reads request bodies as JSON only, and checks the raw bytes before parsing:
 *
 * - empty: no body at all;
 * - nested deeper than MAX_BODY_DEPTH: 400 VALIDATION_FAILED naming `body`, found in one pass
 *   over the bytes, so no parser or schema ever recurses through a hostile body;
 * - not UTF-8, or not JSON: 400 BAD_REQUEST naming `body`;
 * - any other content type (forms, text): 415 UNSUPPORTED_MEDIA_TYPE;
 * - over 1 MiB: 413 PAYLOAD_TOO_LARGE (Fastify's body limit, before anything is read).
 *
 * Whether the JSON value is an object, and what it holds, is the route's body schema's part.
 */
export function installBodyParsers(app: NestFastifyApplication): void {
  const fastify = app.getHttpAdapter().getInstance();
  // Fastify's own parser, for its protection against __proto__ and constructor.prototype keys.
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  app.useBodyParser('application/json', { bodyLimit: BODY_LIMIT_BYTES }, (request, body, done) => {
    // No bytes is no body (a DELETE sent with the header): routes that need one say so, naming `body`.
    if (body.length === 0) return done(null, undefined);
    if (nestsDeeperThan(body, MAX_BODY_DEPTH)) {
      return done(bodyError('VALIDATION_FAILED', `nests deeper than ${MAX_BODY_DEPTH} levels`), undefined);
    }
    let text: string;
    try {
      text = utf8.decode(body);
    } catch {
      return done(bodyError('BAD_REQUEST', 'is not valid UTF-8'), undefined);
    }
    void parseJson(request as never, text, (error, value) => {
      if (error) done(bodyError('BAD_REQUEST', whyNotJson(text)), undefined);
      else done(null, value);
    });
  });
  // Every other content type: Fastify's text/plain parser goes, and a catch-all refuses the rest
  // (it also keeps Nest from adding its form parser).
  fastify.removeContentTypeParser('text/plain');
  app.useBodyParser('*', { bodyLimit: BODY_LIMIT_BYTES }, (_request, _body, done) => {
    done(
      new ParleyError('UNSUPPORTED_MEDIA_TYPE', 'send the body as JSON (Content-Type: application/json)'),
      undefined,
    );
  });
}
