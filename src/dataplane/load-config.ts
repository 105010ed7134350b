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

/** Loads and validates mesh resources in a short-lived worker thread (see config-worker.ts). */
export async function loadConfigInWorker(paths: readonly string[]): Promise<LoadedConfig> {
  const reply = await inWorker<{
    ok: boolean;
    diagnostics: Diagnostic[];
    resources: { resource: AnyResource; file: string; docIndex: number }[];
  }>({ kind: 'resources', paths: [...paths] });
  return {
    ok: reply.ok,
    diagnostics: reply.diagnostics,
    resources: reply.resources.map((r) => ({ ...r, locate: () => ({ file: r.file, line: 1, col: 1 }) })),
  };
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
