import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { parseAllDocuments } from 'yaml';
import type { Clock } from '../../src/core/clock.js';
import { parseBootstrap } from '../../src/dataplane/bootstrap.js';
import { Proxy } from '../../src/dataplane/proxy.js';
import type { Snapshot } from '../../src/protocol/messages.js';
import { FakeUpstream } from './fake-upstream.js';

/** A temporary folder of mesh resources, removed by `cleanup`. */
export async function meshDir(
  files: Record<string, string>,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'isthmus-mesh-'));
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface EndpointSpec {
  service: string;
  port: number;
  locality: string;
  address?: string;
}

export interface ProxySpec {
  name?: string;
  mode?: 'sidecar' | 'gateway';
  service?: string;
  locality: string;
  /** Static mode: the resource folder (the bootstrap file is written beside it). */
  resources?: string;
  endpoints?: EndpointSpec[];
  /** Control-plane mode instead of `resources`/`endpoints`: an absolute data folder. */
  controlPlane?: { dataDir: string; zones?: string[] };
  inboundApp?: number;
  extra?: string;
  clock?: Clock;
  log?: (event: Record<string, unknown>) => void;
}

/** Starts a proxy in this process from a generated bootstrap; throws with diagnostics if invalid. */
export async function startProxy(input: ProxySpec): Promise<Proxy> {
  const mode = input.mode ?? 'sidecar';
  const byService = new Map<string, EndpointSpec[]>();
  for (const e of input.endpoints ?? []) byService.set(e.service, [...(byService.get(e.service) ?? []), e]);
  const endpoints = [...byService]
    .map(
      ([s, list]) =>
        `    ${s}:\n${list.map((e) => `      - {address: ${e.address ?? '127.0.0.1'}, port: ${e.port}, locality: ${e.locality}}`).join('\n')}`,
    )
    .join('\n');
  const listeners =
    mode === 'gateway'
      ? '  gateway: {listen: 127.0.0.1:0}'
      : [
          '  outbound: {listen: 127.0.0.1:0}',
          input.inboundApp !== undefined
            ? `  inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:${input.inboundApp}}`
            : '',
        ]
          .filter(Boolean)
          .join('\n');
  const text = `apiVersion: isthmus.dev/v1alpha1
kind: ProxyBootstrap
metadata: {name: ${input.name ?? 'test-proxy'}}
spec:
  mode: ${mode}
${mode === 'sidecar' ? `  service: ${input.service ?? 'frontend'}\n` : ''}  locality: ${input.locality}
${listeners}
  admin: {listen: 127.0.0.1:0}
  seed: 42
${input.extra ?? ''}
${
  input.controlPlane
    ? `  controlPlane:
    zones: [${(input.controlPlane.zones ?? ['ws://127.0.0.1:1']).join(', ')}]
    dataDir: ${JSON.stringify(input.controlPlane.dataDir)}`
    : `  resources: [${input.resources ?? ''}]
  endpoints:
${endpoints || '    {}'}`
}
`;
  const base = input.controlPlane ? path.dirname(input.controlPlane.dataDir) : (input.resources ?? '.');
  const { bootstrap, diagnostics } = parseBootstrap(text, path.join(base, 'bootstrap.yaml'));
  if (!bootstrap) throw new Error(`invalid bootstrap:\n${JSON.stringify(diagnostics, null, 2)}\n${text}`);
  return Proxy.start(bootstrap, {
    evaluateIntervalMs: 50,
    ...(input.clock && { clock: input.clock }),
    ...(input.log && { log: input.log }),
  });
}

/**
 * A control-plane snapshot from inline YAML resources (a `---` stream, as the fixtures build)
 * and endpoints, as a zone control plane would send it.
 */
export function snapshotOf(input: {
  version: string;
  resources: string;
  endpoints: EndpointSpec[];
  policyRevision?: number;
  generatedAtMs?: number;
}): Snapshot {
  const docs = parseAllDocuments(input.resources);
  const resources = (Array.isArray(docs) ? docs : [])
    .map((d) => d.toJS() as unknown)
    .filter((v): v is Snapshot['resources'][number] => v !== null && v !== undefined);
  return {
    type: 'snapshot',
    version: input.version,
    policyRevision: input.policyRevision ?? 1,
    generatedAtMs: input.generatedAtMs ?? Date.now(),
    resources,
    endpoints: input.endpoints.map((e) => ({
      service: e.service,
      address: e.address ?? '127.0.0.1',
      port: e.port,
      locality: e.locality,
      weight: 1,
    })),
    regions: [],
  };
}

/** Polls `check` until it returns without throwing (or `timeoutMs` passes, then rethrows). */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 3000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request through a listener, with the body read whole. */
export async function call(
  address: string,
  init: {
    method?: string;
    path?: string;
    host?: string;
    headers?: Record<string, string>;
    body?: string;
  } = {},
): Promise<Reply> {
  const r = await request(`http://${address}${init.path ?? '/'}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { ...(init.host !== undefined && { host: init.host }), ...init.headers },
    ...(init.body !== undefined && { body: init.body }),
  });
  const body = await r.body.text();
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : String(v);
  return { status: r.statusCode, headers, body };
}

/**
 * Writes raw bytes to a listener and returns everything it answers until it closes the
 * connection or `waitMs` passes. For absolute-form targets and malformed requests that an HTTP
 * client would refuse to send.
 */
export async function raw(address: string, text: string, waitMs = 2000): Promise<string> {
  const { createConnection } = await import('node:net');
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e) => (chunks.length ? undefined : reject(e)));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(text);
  });
}

/**
 * What a test suite starts — fake upstreams, resource folders, proxies — stopped in reverse order
 * by one `close()` (proxies before the upstreams they call), so suites need no cleanup code.
 */
export class TestLab {
  #closers: (() => Promise<void>)[] = [];

  async upstream(name: string, host?: string): Promise<FakeUpstream> {
    const f = await FakeUpstream.start(name, host);
    this.#closers.push(() => f.stop());
    return f;
  }

  async upstreams<const N extends readonly string[]>(...names: N): Promise<{ [K in keyof N]: FakeUpstream }> {
    return (await Promise.all(names.map((n) => this.upstream(n)))) as { [K in keyof N]: FakeUpstream };
  }

  /** A folder holding `files`; returns its path. */
  async mesh(files: Record<string, string>): Promise<string> {
    const m = await meshDir(files);
    this.#closers.push(m.cleanup);
    return m.dir;
  }

  /** An empty temporary folder; returns its path. */
  async dir(): Promise<string> {
    return this.mesh({});
  }

  async proxy(input: ProxySpec): Promise<Proxy> {
    const p = await startProxy(input);
    this.#closers.push(() => p.stop());
    return p;
  }

  async close(): Promise<void> {
    const closers = this.#closers.reverse();
    this.#closers = [];
    for (const c of closers) await c();
  }
}
