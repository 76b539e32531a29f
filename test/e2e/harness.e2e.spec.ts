import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { cleanupRun, freePort, runId, startStack, stopStack, type Stack } from '../support/stack';

/**
 * The harness itself: suites run side by side, so a port `freePort` handed out can be taken by
 * another suite's service before ours listens. Another process answering /readyz on that port
 * must not pass for ours, and ours moves to a free port.
 */
describe('the test stack', () => {
  it('does not take another process on its port for a ready service, and moves the service', async () => {
    const port = await freePort();
    const impostor = createServer((_req, res) => res.writeHead(200).end('{"status":"ready"}'));
    await new Promise<void>((resolve) => impostor.listen(port, '127.0.0.1', () => resolve()));
    const id = runId('harness');
    let stack: Stack | undefined;
    try {
      stack = await startStack(
        id,
        { PARLEY_ADMIN_USERNAME: 'admin', PARLEY_ADMIN_PASSWORD: 'harness-admin-1' },
        { access: { ACCESS_HTTP_PORT: String(port) } },
      );
      const access = stack.services.get('access');
      expect(access?.port).not.toBe(port);
      expect(readFileSync(access?.log ?? '', 'utf8')).toContain('EADDRINUSE');
      const ready = await fetch(`http://127.0.0.1:${access?.port}/readyz`);
      expect(ready.status).toBe(200);
    } finally {
      if (stack) await stopStack(stack);
      await cleanupRun(id);
      await new Promise((resolve) => impostor.close(resolve));
    }
  }, 120_000);
});
