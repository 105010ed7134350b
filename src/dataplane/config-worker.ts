import { parentPort } from 'node:worker_threads';
import { loadBootstrap } from './bootstrap.js';
import { validateDocuments, validatePaths, type ValidationResult } from '../model/validate.js';

/**
 * Parses and validates configuration off the proxy's main thread. The YAML parser and the compiled
 * schema validators cost tens of megabytes that V8 would otherwise keep for the life of the
 * process; in a worker they go away when the worker is let go (load-config.ts keeps it for a few
 * seconds after its last request, so a burst of snapshots compiles the validators once). Answers
 * each request `{id, ...}` with plain data only.
 */
export type ConfigRequest =
  | { kind: 'resources'; paths: string[] }
  /** In-memory resource documents (a snapshot's `resources`), located as `origin#index`. */
  | { kind: 'documents'; docs: unknown[]; origin: string }
  | { kind: 'bootstrap'; file: string };

const resourcesReply = (result: ValidationResult) => ({
  ok: result.ok,
  diagnostics: result.diagnostics,
  resources: result.resources.map((r) => ({ resource: r.resource, file: r.file, docIndex: r.docIndex })),
});

async function answer(request: ConfigRequest): Promise<unknown> {
  if (request.kind === 'resources') return resourcesReply(await validatePaths(request.paths));
  if (request.kind === 'documents') return resourcesReply(validateDocuments(request.docs, request.origin));
  try {
    return await loadBootstrap(request.file);
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

parentPort?.on('message', (message: { id: number; request: ConfigRequest }) => {
  void answer(message.request).then((reply) => parentPort?.postMessage({ id: message.id, reply }));
});
