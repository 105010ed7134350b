/**
 * A child process of the control-plane benchmark (forked, one per region): N simulated proxies,
 * each a real protocol client (StreamClient) with its own WebSocket to the region's zone. Each
 * says hello as a `proxy` in REGION/REGION-a, registers one endpoint, and acknowledges every
 * snapshot, as a sidecar does. They run here rather than in the benchmark process so that the
 * process measuring and driving the rounds is not also busy parsing snapshots.
 *
 * Every proxy remembers when (Date.now(), the same clock as the benchmark's: one machine) it
 * first received each policy revision and each endpoint, so the benchmark can ask afterwards,
 * without racing the delivery, when every proxy had something.
 */
import { PROTOCOL_VERSION, decodeServerMessage, type Snapshot } from '../src/protocol/messages.js';
import { StreamClient } from '../src/protocol/stream.js';
import { applySnapshotDelta } from '../src/protocol/snapshot-delta.js';
import { PROXY_STREAM_PATH } from '../src/controlplane/zone.js';
import {
  endpointKey,
  median,
  proxyEndpoint,
  type Condition,
  type FromWorker,
  type ToWorker,
} from './controlplane-shared.js';

interface SimulatedProxy {
  client: StreamClient;
  /** Highest policy revision received, and when each revision first arrived. */
  revision: number;
  revisions: { revision: number; atMs: number }[];
  /** Endpoint key → when a snapshot first listed it. */
  endpoints: Map<string, number>;
  endpointCount: number;
  /** The last complete snapshot (the base of the next delta). */
  last: Snapshot | undefined;
}

interface Watch {
  id: number;
  condition: Condition;
  times: (number | null)[];
  timer: NodeJS.Timeout;
}

const proxies: SimulatedProxy[] = [];
const watches = new Set<Watch>();
/** The last snapshot one proxy received, to measure what decoding one costs. */
let sample: Snapshot | undefined;
let snapshots = 0;

function send(message: FromWorker): void {
  process.send?.(message);
}

/** When proxy `p` first met the condition, or null if it has not yet. */
function metAt(p: SimulatedProxy, c: Condition): number | null {
  switch (c.kind) {
    case 'revision':
      return p.revisions.find((r) => r.revision >= c.revision)?.atMs ?? null;
    case 'endpoint':
      return p.endpoints.get(c.key) ?? null;
    case 'ready': {
      if (p.revision < c.revision || p.endpointCount < c.endpoints) return null;
      return p.revisions.find((r) => r.revision >= c.revision)?.atMs ?? null;
    }
  }
}

function check(w: Watch, final: boolean): void {
  for (let i = 0; i < proxies.length; i++)
    if (w.times[i] === null) w.times[i] = metAt(proxies[i] as SimulatedProxy, w.condition);
  if (final || w.times.every((t) => t !== null)) {
    clearTimeout(w.timer);
    watches.delete(w);
    send({ type: 'watched', id: w.id, times: w.times });
  }
}

function onSnapshot(p: SimulatedProxy, s: Snapshot, atMs: number): void {
  snapshots++;
  if (s.policyRevision > p.revision) {
    p.revision = s.policyRevision;
    p.revisions.push({ revision: s.policyRevision, atMs });
  }
  for (const e of s.endpoints) {
    const key = endpointKey(e);
    if (!p.endpoints.has(key)) p.endpoints.set(key, atMs);
  }
  p.endpointCount = s.endpoints.length;
  if (p === proxies[0]) sample = s;
  for (const w of watches) check(w, false);
}

function start(m: Extract<ToWorker, { type: 'start' }>): void {
  for (let i = 0; i < m.proxies; i++) {
    const endpoint = proxyEndpoint(m.regionIndex, i, m.services);
    const p: SimulatedProxy = {
      revision: 0,
      revisions: [],
      endpoints: new Map(),
      endpointCount: 0,
      last: undefined,
      client: new StreamClient({
        urls: [`ws://${m.zone}${PROXY_STREAM_PATH}`],
        hello: () => ({
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          node: {
            id: `bench-${m.region}-${i}`,
            role: 'proxy',
            locality: `${m.region}/${m.region}-a`,
            service: endpoint.service,
          },
        }),
        onWelcome: (_w, c) => {
          c.send({ type: 'register', endpoint });
        },
        onMessage: (message, c) => {
          // First thing: the time of arrival (the validation StreamClient did is already in it).
          const atMs = Date.now();
          let full: Snapshot | undefined;
          if (message.type === 'snapshot') full = message;
          else if (message.type === 'snapshot-delta') {
            // As a sidecar does: rebuild the complete snapshot from the last one received.
            full = p.last && applySnapshotDelta(p.last, message);
            if (!full) {
              c.send({ type: 'nack', version: message.version, reason: 'no base for the delta' });
              return;
            }
          } else return;
          p.last = full;
          c.version = full.version;
          c.send({ type: 'ack', version: full.version });
          onSnapshot(p, full, atMs);
        },
        onState: (s) => {
          if (!s.connected && s.lastError)
            send({ type: 'error', message: `${m.region}/${i}: ${s.lastError}` });
        },
      }),
    };
    proxies.push(p);
    p.client.start();
  }
  send({ type: 'started', proxies: proxies.length });
}

/** Parses and validates the last snapshot as StreamClient does for every frame; median of 5. */
function decodeCost(id: number): void {
  if (!sample) {
    send({ type: 'decode-cost', id, ms: Number.NaN, bytes: 0, snapshots });
    return;
  }
  const text = JSON.stringify(sample);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    decodeServerMessage(text);
    times.push(performance.now() - t);
  }
  send({ type: 'decode-cost', id, ms: median(times), bytes: Buffer.byteLength(text), snapshots });
}

process.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'start':
      start(m);
      break;
    case 'watch': {
      const w: Watch = {
        id: m.id,
        condition: m.condition,
        times: proxies.map(() => null),
        timer: setTimeout(() => check(w, true), m.timeoutMs),
      };
      watches.add(w);
      check(w, false);
      break;
    }
    case 'register': {
      const p = proxies[m.proxy];
      const atMs = Date.now();
      if (!p?.client.send({ type: 'register', endpoint: m.endpoint })) {
        send({ type: 'error', message: `proxy ${m.proxy} could not send its registration` });
        return;
      }
      send({ type: 'registered', id: m.id, atMs });
      break;
    }
    case 'decode-cost':
      decodeCost(m.id);
      break;
    case 'status':
      send({
        type: 'status',
        id: m.id,
        connected: proxies.filter((p) => p.client.connected).length,
        proxies: proxies.length,
        minRevision: Math.min(...proxies.map((p) => p.revision)),
        minEndpoints: Math.min(...proxies.map((p) => p.endpointCount)),
        maxEndpoints: Math.max(...proxies.map((p) => p.endpointCount)),
        snapshots,
      });
      break;
    case 'stop':
      void Promise.all(proxies.map((p) => p.client.close())).finally(() => process.exit(0));
      break;
  }
});

// The benchmark went away (crash, Ctrl-C): nothing left to report to.
process.on('disconnect', () => process.exit(0));
