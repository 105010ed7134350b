import { Agent, request } from 'undici';
import { seededRandom, type Random } from '../core/random.js';

/**
 * An open-loop load generator: requests start on a fixed schedule whatever the answers do (a
 * closed loop would slow down exactly when the mesh is in trouble and hide the failures). Each
 * answer is classified the way a drill needs it: `ok` (2xx), `failed` (an error answer, or no
 * connection at all), or `unknown` (the request was sent and no answer came in time — for a
 * write, nobody knows whether it was applied).
 */

export interface MixEntry {
  name: string;
  weight: number;
  method: string;
  /** Path; `{id}` is replaced by a product id 1–1000 drawn from the seeded generator. */
  path: string;
  /** Whether the request may safely be repeated (the drill's "failed idempotent" counts these). */
  idempotent: boolean;
  /** Send a fresh `Idempotency-Key` header with each request. */
  idempotencyKey?: boolean;
}

export interface WorkloadTarget {
  region: string;
  /** Base URL, e.g. http://127.0.1.10:15006 (a frontend's sidecar inbound). */
  url: string;
}

export interface RequestResult {
  /** Wall-clock start, ms since the epoch. */
  startMs: number;
  latencyMs: number;
  region: string;
  route: string;
  idempotent: boolean;
  outcome: 'ok' | 'failed' | 'unknown';
  status: number | null;
  /** REGION/ZONE that served each downstream call, from the frontend's answer (when it says). */
  servedBy?: Record<string, string>;
  error?: string;
}

export interface WorkloadOptions {
  targets: WorkloadTarget[];
  /** Requests per second in total, spread evenly over the targets. */
  ratePerSec: number;
  mix: MixEntry[];
  /** Per-request timeout, ms (default 3000). */
  timeoutMs?: number;
  seed?: number;
  onResult: (result: RequestResult) => void;
}

export const DEFAULT_MIX: MixEntry[] = [
  { name: 'browse', weight: 80, method: 'GET', path: '/products/{id}', idempotent: true },
  { name: 'checkout', weight: 20, method: 'POST', path: '/checkout', idempotent: true, idempotencyKey: true },
];

export class Workload {
  readonly #options: WorkloadOptions;
  readonly #random: Random;
  readonly #agent = new Agent({ connections: 64, keepAliveTimeout: 10_000, pipelining: 1 });
  readonly #inflight = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #sent = 0;
  #startedAt = 0;
  #next = 0;
  #stopped = false;
  readonly #totalWeight: number;

  constructor(options: WorkloadOptions) {
    if (options.targets.length === 0) throw new Error('a workload needs at least one target');
    if (!(options.ratePerSec > 0)) throw new Error('a workload needs a rate above 0');
    if (options.mix.length === 0) throw new Error('a workload needs at least one request kind');
    this.#options = options;
    this.#random = seededRandom(options.seed ?? 1);
    this.#totalWeight = options.mix.reduce((sum, m) => sum + m.weight, 0);
  }

  get sent(): number {
    return this.#sent;
  }

  start(): void {
    this.#startedAt = performance.now();
    this.#tick();
  }

  /** Stops issuing requests and waits for the ones in flight (at most their timeout). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await Promise.allSettled([...this.#inflight]);
    await this.#agent.close();
  }

  #tick(): void {
    if (this.#stopped) return;
    const intervalMs = 1000 / this.#options.ratePerSec;
    const elapsed = performance.now() - this.#startedAt;
    // Catch up after a slow turn of the event loop rather than drifting (open loop).
    while (this.#next * intervalMs <= elapsed) {
      this.#next++;
      this.#fire();
    }
    this.#timer = setTimeout(() => this.#tick(), Math.max(1, this.#next * intervalMs - elapsed));
  }

  #pick(): MixEntry {
    let x = this.#random.next() * this.#totalWeight;
    for (const m of this.#options.mix) {
      x -= m.weight;
      if (x < 0) return m;
    }
    return this.#options.mix[this.#options.mix.length - 1] as MixEntry;
  }

  #fire(): void {
    const targets = this.#options.targets;
    const target = targets[this.#sent % targets.length] as WorkloadTarget;
    const entry = this.#pick();
    const id = 1 + Math.floor(this.#random.next() * 1000);
    const seq = ++this.#sent;
    const p = this.#send(target, entry, id, seq).finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
  }

  async #send(target: WorkloadTarget, entry: MixEntry, id: number, seq: number): Promise<void> {
    const timeoutMs = this.#options.timeoutMs ?? 3000;
    const startMs = Date.now();
    const t0 = performance.now();
    const headers: Record<string, string> = { 'x-request-id': `load-${target.region}-${seq}` };
    if (entry.idempotencyKey) headers['idempotency-key'] = `load-${startMs}-${seq}`;
    let body: string | undefined;
    if (entry.method !== 'GET' && entry.method !== 'HEAD') {
      body = JSON.stringify({ productId: id, quantity: 1 });
      headers['content-type'] = 'application/json';
    }
    const base: Omit<RequestResult, 'outcome' | 'status' | 'latencyMs'> = {
      startMs,
      region: target.region,
      route: entry.name,
      idempotent: entry.idempotent,
    };
    let sent = false;
    try {
      const res = await request(`${target.url}${entry.path.replace('{id}', String(id))}`, {
        method: entry.method as 'GET',
        headers,
        ...(body !== undefined && { body }),
        dispatcher: this.#agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
      sent = true;
      const text = await res.body.text();
      const servedBy = servedByOf(text);
      this.#options.onResult({
        ...base,
        latencyMs: performance.now() - t0,
        outcome: res.statusCode >= 200 && res.statusCode < 300 ? 'ok' : 'failed',
        status: res.statusCode,
        ...(servedBy && { servedBy }),
      });
    } catch (err) {
      const code =
        typeof (err as { code?: unknown }).code === 'string'
          ? (err as { code: string }).code
          : (err as Error).name;
      // Refused or reset before an answer started: the request certainly did not complete, but a
      // timeout leaves a write's fate unknown.
      const timedOut =
        code === 'UND_ERR_HEADERS_TIMEOUT' ||
        code === 'UND_ERR_BODY_TIMEOUT' ||
        code === 'TimeoutError' ||
        code === 'AbortError';
      this.#options.onResult({
        ...base,
        latencyMs: performance.now() - t0,
        outcome: timedOut || (sent && !entry.idempotent) ? 'unknown' : 'failed',
        status: null,
        error: code,
      });
    }
  }
}

/** The `servedBy` map of a frontend answer (`{"servedBy": {"catalog": "eu-west/eu-west-a"}}`). */
function servedByOf(text: string): Record<string, string> | undefined {
  if (!text.includes('servedBy')) return undefined;
  try {
    const parsed = JSON.parse(text) as { servedBy?: unknown };
    const s = parsed.servedBy;
    if (!s || typeof s !== 'object' || Array.isArray(s)) return undefined;
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(s)) if (typeof v === 'string') out[k] = v;
    return out;
  } catch {
    return undefined;
  }
}
