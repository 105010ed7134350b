import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApiClient } from '../../src/controlplane/api-client.js';
import { GlobalControlPlane } from '../../src/controlplane/global.js';
import { SingleProcessElection } from '../../src/controlplane/store/election.js';
import { openStore } from '../../src/controlplane/store/open.js';
import { PROXY_STREAM_PATH, ZoneControlPlane } from '../../src/controlplane/zone.js';
import { validateText } from '../../src/model/validate.js';
import type { AnyResource } from '../../src/model/resources.js';
import { PROTOCOL_VERSION, type EndpointRecord, type Snapshot } from '../../src/protocol/messages.js';
import { applySnapshotDelta } from '../../src/protocol/snapshot-delta.js';
import { StreamClient } from '../../src/protocol/stream.js';

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 5000,
  intervalMs = 10,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Parses YAML resources (which must be valid) into objects to apply. */
export function resources(yaml: string): AnyResource[] {
  const result = validateText(yaml, 'test.yaml');
  if (!result.ok) throw new Error(`invalid test resources:\n${JSON.stringify(result.diagnostics, null, 2)}`);
  return result.resources.map((r) => r.resource);
}

/**
 * A stand-in for a proxy that speaks the real protocol: records every snapshot, acknowledges it
 * (or refuses it, when told to), and can register an endpoint.
 */
export class FakeProxy {
  readonly snapshots: Snapshot[] = [];
  readonly client: StreamClient;
  /** When set, the next snapshots are refused with this reason. */
  refuseWith: string | undefined;
  applied: string | undefined;
  /** How many of the snapshots came as deltas. */
  deltas = 0;

  constructor(input: {
    zone: string;
    id: string;
    locality: string;
    role?: 'proxy' | 'gateway';
    service?: string;
    register?: EndpointRecord;
    resume?: string;
  }) {
    this.applied = input.resume;
    this.client = new StreamClient({
      urls: [`ws://${input.zone}${PROXY_STREAM_PATH}`],
      backoffBaseMs: 20,
      backoffMaxMs: 200,
      hello: () => ({
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        node: {
          id: input.id,
          role: input.role ?? 'proxy',
          locality: input.locality,
          ...(input.service !== undefined && { service: input.service }),
        },
        ...(this.applied !== undefined && { resume: { version: this.applied } }),
      }),
      onWelcome: (_w, c) => {
        if (input.register) c.send({ type: 'register', endpoint: input.register });
      },
      onMessage: (message, c) => {
        let m: Snapshot | undefined;
        if (message.type === 'snapshot') m = message;
        else if (message.type === 'snapshot-delta') {
          m = this.latest && applySnapshotDelta(this.latest, message);
          this.deltas++;
          if (!m) {
            c.send({ type: 'nack', version: message.version, reason: 'no base for the delta' });
            return;
          }
        } else return;
        this.snapshots.push(m);
        if (this.refuseWith !== undefined) {
          c.send({ type: 'nack', version: m.version, reason: this.refuseWith });
          return;
        }
        this.applied = m.version;
        c.version = m.version;
        c.send({ type: 'ack', version: m.version });
      },
    }).start();
  }

  get latest(): Snapshot | undefined {
    return this.snapshots.at(-1);
  }

  /** Waits for a snapshot matching `check` (the latest one counts first). */
  waitFor(check: (s: Snapshot) => boolean, what: string, timeoutMs = 5000): Promise<Snapshot> {
    return waitUntil(() => (this.latest && check(this.latest) ? this.latest : undefined), what, timeoutMs);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export const names = (s: Snapshot | undefined) =>
  (s?.resources ?? []).map((r) => `${r.kind}/${r.metadata.name}`).sort();

/** Starts and stops in-process global and zone control planes with temporary data directories. */
export class ControlPlaneLab {
  readonly #closers: (() => Promise<unknown>)[] = [];
  readonly #dirs: string[] = [];

  async dir(): Promise<string> {
    const d = await mkdtemp(path.join(tmpdir(), 'isthmus-cp-'));
    this.#dirs.push(d);
    return d;
  }

  async global(options: { dataDir?: string; listen?: string } = {}) {
    const dataDir = options.dataDir ?? (await this.dir());
    const store = await openStore(`sqlite:${path.join(dataDir, 'global.db')}`, { dataDir });
    const cp = await GlobalControlPlane.start({
      store,
      listen: options.listen ?? '127.0.0.1:0',
      elect: (advertise) => Promise.resolve(new SingleProcessElection(advertise)),
      heartbeatIntervalMs: 100,
    });
    this.#closers.push(() => cp.close().catch(() => undefined));
    return { cp, dataDir, url: `http://${cp.address}`, api: new ApiClient(`http://${cp.address}`) };
  }

  async zone(region: string, globalUrls: string[], options: { dataDir?: string; listen?: string } = {}) {
    const dataDir = options.dataDir ?? (await this.dir());
    const store = await openStore(`sqlite:${path.join(dataDir, 'zone.db')}`, { dataDir });
    const cp = await ZoneControlPlane.start({
      region,
      globalUrls,
      store,
      listen: options.listen ?? '127.0.0.1:0',
      heartbeatIntervalMs: 100,
    });
    this.#closers.push(() => cp.close().catch(() => undefined));
    return { cp, dataDir, address: cp.address };
  }

  proxy(input: ConstructorParameters<typeof FakeProxy>[0]): FakeProxy {
    const p = new FakeProxy(input);
    this.#closers.push(() => p.close());
    return p;
  }

  /** Registers something else to stop at the end. */
  defer(close: () => Promise<unknown>): void {
    this.#closers.push(close);
  }

  async close(): Promise<void> {
    for (const c of this.#closers.reverse()) await c();
    for (const d of this.#dirs) await rm(d, { recursive: true, force: true });
  }
}
