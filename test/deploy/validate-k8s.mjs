// Validates Kubernetes objects against the API's schemas with `kubernetes-models` (an ES module,
// so it runs here rather than inside Jest). Reads a JSON array of objects on stdin and prints
// one JSON array: for each object, its kind and name and the schema's complaint (or null).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = require.resolve('kubernetes-models/package.json').replace(/package\.json$/, '');

let input = '';
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const object of JSON.parse(input)) {
  const { apiVersion, kind } = object;
  const name = object.metadata?.name ?? '(no name)';
  let error = null;
  try {
    // apps/v1 → kubernetes-models/apps/v1, v1 → kubernetes-models/v1
    const models = await import(`${root}${apiVersion}/index.js`);
    const Model = models[kind];
    if (!Model) throw new Error(`no model for ${apiVersion} ${kind}`);
    new Model(object).validate();
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  results.push({ apiVersion, kind, name, error });
}
process.stdout.write(JSON.stringify(results));
