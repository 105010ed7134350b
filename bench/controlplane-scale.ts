/**
 * The scale part of the control-plane benchmark, in a child process of its own (forked with
 * --expose-gc, so heap figures are after a full collection and nothing of the propagation run is
 * in them). No processes, only loopback sockets inside this one:
 *
 * (a) global side: validating and applying S services with DesiredState into a SqliteKvStore in
 *     a temporary directory, then `changesSince(0)` (what a zone that starts from nothing gets);
 *     the same for a one-resource change on top;
 * (b) zone side: a real ZoneControlPlane (region eu-west) linked to a real GlobalControlPlane on
 *     that store, both in this process. Two stand-in zones (us-east, ap-south; protocol clients)
 *     give global their inventories of E/3 endpoints each and leave; the zone's own E/3 are
 *     registrations on its disk, owned by the one stand-in proxy connected to it (a restarted
 *     zone). The snapshot build time is the zone's own `isthmus_zone_snapshot_build_seconds`
 *     gauge; apply → snapshot-at-proxy is timed around it, for a policy change and for an
 *     endpoint change, and a burst of registrations over the stream is timed too.
 *
 * Reports one `{type: 'result', ...}` message to the parent.
 */
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DesiredState } from '../src/controlplane/desired-state.js';
import { GlobalControlPlane, ZONE_STREAM_PATH } from '../src/controlplane/global.js';
import { SingleProcessElection } from '../src/controlplane/store/election.js';
import { openStore } from '../src/controlplane/store/open.js';
import { PROXY_STREAM_PATH, ZoneControlPlane } from '../src/controlplane/zone.js';
import type { AnyResource } from '../src/model/resources.js';
import { validateDocuments } from '../src/model/validate.js';
import {
  PROTOCOL_VERSION,
  decodeServerMessage,
  type EndpointRecord,
  type Snapshot,
} from '../src/protocol/messages.js';
import { applySnapshotDelta } from '../src/protocol/snapshot-delta.js';
import { StreamClient } from '../src/protocol/stream.js';
import {
  endpointKey,
  median,
  memory,
  meshDocs,
  REGIONS,
  serviceName,
  type Doc,
} from './controlplane-shared.js';

const { values } = parseArgs({
  options: {
    services: { type: 'string', default: '10000' },
    endpoints: { type: 'string', default: '100000' },
    cycles: { type: 'string', default: '3' },
    /** Where its SQLite files go (inside the benchmark's temporary directory); created. */
    dir: { type: 'string' },
  },
});
const SERVICES = Number(values.services);
const ENDPOINTS = Number(values.endpoints);
const CYCLES = Number(values.cycles);
const LOAD_TIMEOUT_MS = 120_000;
/** Registrations sent in one go over the proxy's stream, to time the zone's registration path. */
const BURST = 1000;
/** The stand-in proxy's node id; the preloaded registrations are its own. */
const PROXY_NODE = 'bench-scale-proxy';
const CYCLE_TIMEOUT_MS = 60_000;

const ms = (start: number) => performance.now() - start;

function validated(docs: Doc[]): { resources: AnyResource[]; ms: number } {
  const t = performance.now();
  const v = validateDocuments(docs, 'request');
  const took = ms(t);
  if (!v.ok)
    throw new Error(
      `the generated mesh is invalid: ${JSON.stringify(v.diagnostics.filter((d) => d.severity === 'error').slice(0, 3))}`,
    );
  return { resources: v.resources.map((r) => r.resource), ms: took };
}

/** Endpoint `k` of a region in the large mesh: 10.R.x.y:8080, spread over the services. */
function endpoint(regionIndex: number, k: number): EndpointRecord {
  const region = REGIONS[regionIndex] as string;
  return {
    service: serviceName(k % SERVICES, SERVICES),
    address: `10.${regionIndex + 1}.${(k >> 8) & 255}.${k & 255}`,
    port: 8080 + (k >> 16),
    locality: `${region}/${region}-a`,
    weight: 1,
  };
}

/** The one proxy on the zone: registers the zone's share of endpoints and watches its snapshots. */
class ScaleProxy {
  readonly client: StreamClient;
  latest: { policyRevision: number; endpoints: number; atMs: number } | undefined;
  /** Whether to keep the next snapshots in `sample` (the largest object here, so only while asked). */
  keepSample = true;
  sample: Snapshot | undefined;
  #last: Snapshot | undefined;
  readonly #waiters = new Set<{ check: (s: Snapshot) => boolean; resolve: (atMs: number) => void }>();

  constructor(zone: string) {
    this.client = new StreamClient({
      urls: [`ws://${zone}${PROXY_STREAM_PATH}`],
      hello: () => ({
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        node: { id: PROXY_NODE, role: 'proxy', locality: 'eu-west/eu-west-a' },
      }),
      onMessage: (message, c) => {
        const atMs = performance.now();
        let m: Snapshot | undefined;
        if (message.type === 'snapshot') m = message;
        else if (message.type === 'snapshot-delta') {
          // As a sidecar does: rebuild the complete snapshot from the last one received.
          m = this.#last && applySnapshotDelta(this.#last, message);
          if (!m) {
            c.send({ type: 'nack', version: message.version, reason: 'no base for the delta' });
            return;
          }
        } else return;
        this.#last = m;
        c.send({ type: 'ack', version: m.version });
        this.latest = { policyRevision: m.policyRevision, endpoints: m.endpoints.length, atMs };
        if (this.keepSample) this.sample = m;
        for (const w of this.#waiters)
          if (w.check(m)) {
            this.#waiters.delete(w);
            w.resolve(atMs);
          }
      },
    }).start();
  }

  /** performance.now() when a snapshot matching `check` arrives (the current one counts). */
  waitFor(check: (s: Snapshot) => boolean, what: string, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(w);
        reject(
          new Error(
            `no snapshot with ${what} within ${timeoutMs} ms (latest: ${JSON.stringify(this.latest)})`,
          ),
        );
      }, timeoutMs);
      const w = {
        check,
        resolve: (atMs: number) => {
          clearTimeout(timer);
          resolve(atMs);
        },
      };
      this.#waiters.add(w);
    });
  }
}

/** A stand-in zone of another region: hands global its inventory, acknowledges policies. */
function standInZone(globalAddress: string, regionIndex: number, endpoints: EndpointRecord[]): StreamClient {
  const region = REGIONS[regionIndex] as string;
  return new StreamClient({
    urls: [`ws://${globalAddress}${ZONE_STREAM_PATH}`],
    hello: () => ({
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      node: { id: `bench-${region}`, role: 'zone', locality: region },
    }),
    onWelcome: (_w, c) => {
      c.send({
        type: 'inventory',
        region,
        epoch: 'bench',
        revision: 1,
        generatedAtMs: Date.now(),
        endpoints,
      });
    },
    onMessage: (m, c) => {
      if (m.type === 'policy') c.send({ type: 'ack', version: String(m.revision) });
    },
  }).start();
}

async function until(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const tmp = values.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'isthmus-bench-scale-')));
await mkdir(tmp, { recursive: true });
// Ctrl-C in the terminal reaches this process too: leave no temporary directory behind.
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    rmSync(tmp, { recursive: true, force: true });
    process.exit(130);
  });

async function main(): Promise<Record<string, unknown>> {
  const closers: (() => Promise<unknown>)[] = [];
  try {
    // ---- (a) global side ----------------------------------------------------------------------
    // The validators are compiled on first use; do that on a small mesh so the timings below are
    // what every later apply pays.
    validated(meshDocs(10));
    const memStart = memory();
    const docs = meshDocs(SERVICES, 0);
    const v = validated(docs);
    const globalDb = path.join(tmp, 'global.db');
    const store = await openStore(`sqlite:${globalDb}`);
    const state = new DesiredState(store);
    const meta = (message: string) => ({ actor: 'bench', origin: 'bench', message, atMs: Date.now() });
    let t = performance.now();
    const first = await state.apply(v.resources, meta('initial'));
    const applyMs = ms(t);
    if (!first.ok) throw new Error('the initial apply conflicted');
    t = performance.now();
    const full = await state.changesSince(0);
    const changesSinceFullMs = ms(t);
    t = performance.now();
    const policyText = JSON.stringify({ type: 'policy', ...full });
    const policyStringifyMs = ms(t);
    const v1 = validated(meshDocs(SERVICES, 1));
    t = performance.now();
    const second = await state.apply(v1.resources, meta('one change'));
    const applyOneMs = ms(t);
    if (!second.ok || second.changes.length !== 1)
      throw new Error(`the one-change apply did not change exactly one resource: ${JSON.stringify(second)}`);
    t = performance.now();
    const delta = await state.changesSince(first.revision);
    const changesSinceDeltaMs = ms(t);
    const memGlobal = memory();
    await store.close();
    const globalSide = {
      services: SERVICES,
      resources: docs.length,
      validateMs: v.ms,
      validateOneChangeMs: v1.ms,
      applyMs,
      changesSinceFullMs,
      fullUpserts: full.upserts.length,
      policyMessageBytes: Buffer.byteLength(policyText),
      policyStringifyMs,
      applyOneMs,
      changesSinceDeltaMs,
      deltaUpserts: delta.upserts.length,
      heapUsedDeltaBytes: memGlobal.heapUsedBytes - memStart.heapUsedBytes,
      rssDeltaBytes: memGlobal.rssBytes - memStart.rssBytes,
    };
    process.stderr.write(`  global side done (apply ${Math.round(applyMs)} ms)\n`);

    // ---- (b) zone side ------------------------------------------------------------------------
    const global = await GlobalControlPlane.start({
      store: await openStore(`sqlite:${globalDb}`),
      listen: '127.0.0.1:0',
      elect: (advertise) => Promise.resolve(new SingleProcessElection(advertise)),
    });
    closers.push(() => global.close());
    const perRegion = Math.floor(ENDPOINTS / 3);
    const share = (regionIndex: number, n: number) =>
      Array.from({ length: n }, (_, k) => endpoint(regionIndex, k));
    // The stand-in zones leave once global stored their inventories: global keeps serving them
    // (as disconnected regions, which a connected zone still routes to), and policy updates then
    // are not parsed by two extra clients inside this process during the measured cycles.
    const standIns = [1, 2].map((ri) => standInZone(global.address, ri, share(ri, perRegion)));
    await until(
      async () =>
        (await global.zones()).filter(
          (z) => (z.inventory as { endpoints: number } | null)?.endpoints === perRegion,
        ).length === 2,
      'global to store the stand-in zones’ inventories',
      60_000,
    );
    await Promise.all(standIns.map((c) => c.close()));
    const localCount = ENDPOINTS - 2 * perRegion;
    // The zone's own share is on disk before it starts, as after a restart: the zone loads its
    // registrations and gives each a fresh lease, renewed by the frames of the node that made
    // them (docs/protocol.md), here the stand-in proxy below. Registering them over the stream
    // instead is a burst of one SQLite commit each (measured separately below) that would keep
    // the zone busy for longer than the streams' silence timeout.
    const zoneStore = await openStore(`sqlite:${path.join(tmp, 'zone.db')}`);
    {
      const now = Date.now();
      await zoneStore.txn({
        put: Array.from({ length: localCount }, (_, k) => {
          const e = endpoint(0, k);
          const id = endpointKey(e);
          return {
            key: `registrations/${id}`,
            value: { id, endpoint: e, node: PROXY_NODE, registeredAtMs: now, expiresAtMs: now + 15_000 },
          };
        }),
      });
    }
    const memBeforeZone = memory();

    const zoneStart = performance.now();
    const zone = await ZoneControlPlane.start({
      region: 'eu-west',
      globalUrls: [`http://${global.address}`],
      store: zoneStore,
      listen: '127.0.0.1:0',
    });
    closers.unshift(() => zone.close());
    const proxy = new ScaleProxy(zone.address);
    closers.unshift(() => proxy.client.close());
    const head = second.revision;
    const loadedAt = await proxy.waitFor(
      (s) => s.policyRevision === head && s.endpoints.length === ENDPOINTS,
      `revision ${head} and ${ENDPOINTS} endpoints`,
      LOAD_TIMEOUT_MS,
    );
    const loadMs = loadedAt - zoneStart;
    const loadBuildMs = zone.stats.get('isthmus_zone_snapshot_build_seconds') * 1000;
    process.stderr.write(`  zone loaded ${ENDPOINTS} endpoints in ${Math.round(loadMs)} ms\n`);
    // Let the registration burst's leftovers (inventory pushes, coalesced rebuilds) finish.
    await new Promise((r) => setTimeout(r, 1000));
    const sample = proxy.sample;
    proxy.keepSample = false;
    proxy.sample = undefined;
    let snapshotBytes = 0;
    let proxyDecodeMs = Number.NaN;
    if (sample) {
      const text = JSON.stringify(sample);
      snapshotBytes = Buffer.byteLength(text);
      t = performance.now();
      decodeServerMessage(text);
      proxyDecodeMs = ms(t);
    }
    const memZone = memory();

    // Policy changes: one resource, applied on global the way the API does after validation.
    const policyCycles: { cycleMs: number; buildMs: number; validateMs: number }[] = [];
    for (let i = 0; i < CYCLES; i++) {
      const next = validated(meshDocs(SERVICES, 2 + i));
      const start = performance.now();
      const applied = await global.state.apply(next.resources, meta(`cycle ${i}`));
      if (!applied.ok) throw new Error('a cycle apply conflicted');
      const revision = applied.revision;
      const at = await proxy.waitFor(
        (s) => s.policyRevision >= revision,
        `revision ${revision}`,
        CYCLE_TIMEOUT_MS,
      );
      policyCycles.push({
        cycleMs: at - start,
        buildMs: zone.stats.get('isthmus_zone_snapshot_build_seconds') * 1000,
        validateMs: next.ms,
      });
      await new Promise((r) => setTimeout(r, 300));
    }

    // Endpoint changes: the proxy registers one more endpoint in eu-west.
    const endpointCycles: { cycleMs: number; buildMs: number }[] = [];
    for (let i = 0; i < CYCLES; i++) {
      const e = endpoint(0, localCount + i);
      const key = endpointKey(e);
      const start = performance.now();
      proxy.client.send({ type: 'register', endpoint: e });
      const at = await proxy.waitFor(
        (s) => s.endpoints.some((x) => endpointKey(x) === key),
        `endpoint ${key}`,
        CYCLE_TIMEOUT_MS,
      );
      endpointCycles.push({
        cycleMs: at - start,
        buildMs: zone.stats.get('isthmus_zone_snapshot_build_seconds') * 1000,
      });
      await new Promise((r) => setTimeout(r, 300));
    }

    // A burst: BURST new endpoints registered back to back on the stream.
    const burst = Array.from({ length: BURST }, (_, k) => endpoint(0, localCount + CYCLES + k));
    const lastKey = endpointKey(burst[burst.length - 1] as EndpointRecord);
    const burstStart = performance.now();
    for (const e of burst) proxy.client.send({ type: 'register', endpoint: e });
    const burstAt = await proxy.waitFor(
      (s) =>
        s.endpoints.length >= ENDPOINTS + CYCLES + BURST &&
        s.endpoints.some((x) => endpointKey(x) === lastKey),
      `the ${BURST} registrations of the burst`,
      CYCLE_TIMEOUT_MS,
    );
    const burstMs = burstAt - burstStart;

    const zoneSide = {
      services: SERVICES,
      endpoints: ENDPOINTS,
      localEndpoints: localCount,
      remoteEndpoints: 2 * perRegion,
      loadMs,
      loadBuildMs,
      snapshotBytes,
      proxyDecodeMs,
      heapUsedDeltaBytes: memZone.heapUsedBytes - memBeforeZone.heapUsedBytes,
      rssDeltaBytes: memZone.rssBytes - memBeforeZone.rssBytes,
      heapUsedBytes: memZone.heapUsedBytes,
      rssBytes: memZone.rssBytes,
      policyCycles,
      endpointCycles,
      burst: BURST,
      burstMs,
      buildMsMedian: median([...policyCycles, ...endpointCycles].map((c) => c.buildMs)),
      buildMsMax: Math.max(...[...policyCycles, ...endpointCycles].map((c) => c.buildMs)),
    };
    return { globalSide, zoneSide };
  } finally {
    for (const c of closers) await c().catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
  }
}

try {
  const result = await main();
  process.send?.({ type: 'result', ...result });
  process.exitCode = 0;
} catch (err) {
  process.send?.({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
}
// Sockets and timers of the control planes are closed; nothing else should keep us, but a
// stuck close must not keep the benchmark waiting.
setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
