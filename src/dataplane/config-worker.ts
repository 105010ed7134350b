import { parentPort, workerData } from 'node:worker_threads';
import { loadBootstrap } from './bootstrap.js';
import { validatePaths } from '../model/validate.js';

/**
 * Parses and validates configuration off the proxy's main thread. The YAML parser and the compiled
 * schema validators cost tens of megabytes that V8 would otherwise keep for the life of the
 * process; in a worker they go away with the worker. Replies with plain data only.
 */
export type ConfigRequest = { kind: 'resources'; paths: string[] } | { kind: 'bootstrap'; file: string };

const request = workerData as ConfigRequest;
if (request.kind === 'resources') {
  const result = await validatePaths(request.paths);
  parentPort?.postMessage({
    ok: result.ok,
    diagnostics: result.diagnostics,
    resources: result.resources.map((r) => ({ resource: r.resource, file: r.file, docIndex: r.docIndex })),
  });
} else {
  try {
    parentPort?.postMessage(await loadBootstrap(request.file));
  } catch (err) {
    parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
}
