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

/**
 * How long the worker is kept after its last answer, ms. After a snapshot from the control plane
 * (documents): long enough that a burst of updates reuses it instead of compiling the schema
 * validators again each time. After the bootstrap file: long enough for the resource files it
 * names, which come next. After resource files (the last step of a static start, or a reload):
 * not at all, so that a proxy with a static configuration serves without the worker's ~30 MB.
 */
const IDLE_MS: Record<ConfigRequest['kind'], number> = { documents: 5_000, bootstrap: 250, resources: 0 };

interface Pending {
  resolve: (reply: unknown) => void;
  reject: (err: Error) => void;
}

/**
 * One configuration worker, started on demand and let go after a while without requests
 * (its memory goes with it). It holds the process open only while a request is in flight. A
 * worker that fails (e.g. over its memory limit) fails the requests it had and is replaced on the
 * next one.
 */
class ConfigWorker {
  #worker: Worker | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #idleTimer: NodeJS.Timeout | undefined;
  #idleMs = 0;

  request<T>(request: ConfigRequest): Promise<T> {
    const worker = this.#worker ?? this.#start();
    clearTimeout(this.#idleTimer);
    this.#idleMs = IDLE_MS[request.kind];
    worker.ref();
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (reply: unknown) => void, reject });
      worker.postMessage({ id, request });
    });
  }

  #start(): Worker {
    const worker = new Worker(new URL('./config-worker.js', import.meta.url), {
      // Parsing and validation are bounded work; a runaway worker must not take the proxy with it.
      resourceLimits: { maxOldGenerationSizeMb: 256 },
    });
    this.#worker = worker;
    worker.on('message', (message: { id: number; reply: unknown }) => {
      const pending = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      pending?.resolve(message.reply);
      if (this.#pending.size === 0) this.#idle(worker);
    });
    const fail = (err: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      clearTimeout(this.#idleTimer);
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
    worker.once('error', fail);
    worker.once('exit', (code) => {
      if (this.#pending.size > 0 && this.#worker === worker)
        fail(new Error(`configuration worker exited with code ${code} before answering`));
      if (this.#worker === worker) this.#worker = undefined;
    });
    return worker;
  }

  #idle(worker: Worker): void {
    worker.unref();
    clearTimeout(this.#idleTimer);
    if (this.#idleMs === 0) {
      this.#worker = undefined;
      void worker.terminate();
      return;
    }
    this.#idleTimer = setTimeout(() => {
      if (this.#worker !== worker || this.#pending.size > 0) return;
      this.#worker = undefined;
      void worker.terminate();
    }, this.#idleMs);
    this.#idleTimer.unref();
  }
}

const configWorker = new ConfigWorker();

function inWorker<T>(request: ConfigRequest): Promise<T> {
  return configWorker.request<T>(request);
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

/** Loads and validates mesh resources in the configuration worker thread (see config-worker.ts). */
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
