// Container health: exits 0 when the service on the given port answers /readyz with 200.
const port = process.argv[2] ?? '8080';
fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(3000) }).then(
  (res) => process.exit(res.ok ? 0 : 1),
  () => process.exit(1),
);
