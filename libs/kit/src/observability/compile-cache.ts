/**
 * Node's on-disk compile cache (https://nodejs.org/api/module.html#module-compile-cache) for
 * every module loaded after this one. Most of a service's start-up is loading and compiling
 * its modules (well over a thousand: OpenTelemetry, Nest, MikroORM, the NATS client), so a
 * service started again on the same host reaches its first NATS fetch sooner. Entries are
 * checked against a hash of their source, so a rebuilt file is compiled afresh; a cache that
 * cannot be written is skipped without error. `NODE_COMPILE_CACHE` names the directory
 * (default `<tmpdir>/node-compile-cache`), `NODE_DISABLE_COMPILE_CACHE=1` turns it off.
 * `startHttpService` writes the cache out once the service is up (Node would otherwise write
 * it only at a clean exit, which a service stopped by a signal never makes).
 */
import { enableCompileCache } from 'node:module';

enableCompileCache();
