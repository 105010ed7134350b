import { parentPort, workerData } from 'node:worker_threads';
import { loadBootstrap } from './bootstrap.js';
import { validateDocuments, validatePaths, type ValidationResult } from '../model/validate.js';

/**
 * Parses and validates configuration off the proxy's main thread. The YAML parser and the compiled
 * schema validators cost tens of megabytes that V8 would otherwise keep for the life of the
 * process; in a worker they go away with the worker. Replies with plain data only.
 */
export type ConfigRequest =
  | { kind: 'resources'; paths: string[] }
  /** In-memory resource documents (a snapshot's `resources`), located as `origin#index`. */
  | { kind: 'documents'; docs: unknown[]; origin: string }
  | { kind: 'bootstrap'; file: string };

const reply = (result: ValidationResult) =>
  parentPort?.postMessage({
    ok: result.ok,
    diagnostics: result.diagnostics,
    resources: result.resources.map((r) => ({ resource: r.resource, file: r.file, docIndex: r.docIndex })),
  });

const request = workerData as ConfigRequest;
if (request.kind === 'resources') {
  reply(await validatePaths(request.paths));
} else if (request.kind === 'documents') {
  reply(validateDocuments(request.docs, request.origin));
} else {
  try {
    parentPort?.postMessage(await loadBootstrap(request.file));
  } catch (err) {
    parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
}
