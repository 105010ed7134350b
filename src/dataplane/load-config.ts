import { Worker } from 'node:worker_threads';
import { IsthmusError } from '../core/errors.js';
import type { Diagnostic } from '../model/diagnostics.js';
import type { LoadedResource } from '../model/load.js';
import type { AnyResource } from '../model/resources.js';
import type { Bootstrap } from './bootstrap.js';
import type { ConfigRequest } from './config-worker.js';

export interface LoadedConfig {
  ok: boolean;
  diagnostics: Diagnostic[];
  /**
   * The validated resources. Positions are not carried over from the worker: `locate` answers
   * the file only (line 1), which is all the running proxy needs.
   */
  resources: LoadedResource[];
}

function inWorker<T>(request: ConfigRequest): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./config-worker.js', import.meta.url), {
      workerData: request,
      // Parsing and validation are bounded work; a runaway worker must not take the proxy with it.
      resourceLimits: { maxOldGenerationSizeMb: 256 },
    });
    let settled = false;
    worker.once('message', (reply: T) => {
      settled = true;
      void worker.terminate();
      resolve(reply);
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`configuration worker exited with code ${code} before answering`));
    });
  });
}

type ResourcesReply = {
  ok: boolean;
  diagnostics: Diagnostic[];
  resources: { resource: AnyResource; file: string; docIndex: number }[];
};

async function resourcesInWorker(request: ConfigRequest): Promise<LoadedConfig> {
  const reply = await inWorker<ResourcesReply>(request);
  return {
    ok: reply.ok,
    diagnostics: reply.diagnostics,
    resources: reply.resources.map((r) => ({ ...r, locate: () => ({ file: r.file, line: 1, col: 1 }) })),
  };
}

/** Loads and validates mesh resources in a short-lived worker thread (see config-worker.ts). */
export function loadConfigInWorker(paths: readonly string[]): Promise<LoadedConfig> {
  return resourcesInWorker({ kind: 'resources', paths: [...paths] });
}

/**
 * Validates in-memory resource documents (a snapshot's `resources`) in the same kind of worker,
 * with the same checks as files; diagnostics are located at `origin#index`.
 */
export function validateDocumentsInWorker(docs: readonly unknown[], origin: string): Promise<LoadedConfig> {
  return resourcesInWorker({ kind: 'documents', docs: [...docs], origin });
}

/** Parses a bootstrap file in a worker thread; same result as `loadBootstrap`. */
export async function loadBootstrapInWorker(
  file: string,
): Promise<{ bootstrap?: Bootstrap; diagnostics: Diagnostic[] }> {
  const reply = await inWorker<{ bootstrap?: Bootstrap; diagnostics: Diagnostic[] } | { error: string }>({
    kind: 'bootstrap',
    file,
  });
  if ('error' in reply) throw new IsthmusError('ISTHMUS_E_IO', reply.error);
  return reply;
}
