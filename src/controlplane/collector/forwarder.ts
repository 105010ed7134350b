import { FullJitterBackoff } from '../../core/backoff.js';
import { systemRandom, type Random } from '../../core/random.js';
import type { Stats } from '../../dataplane/stats.js';
import { jsonText, type JsonObject } from '../../telemetry/otlp.js';
import { WriteAheadLog, type WalAppend, type WalRecord } from '../../telemetry/wal/index.js';

/**
 * Forwards what a collector stored to its upstream collector through the collector's own
 * write-ahead log: appended before the collector answers 200, shipped in batches (many WAL records
 * merged into one OTLP request per signal) with full-jitter backoff and no give-up, acked only once
 * the upstream answered 200. The bodies are the OTLP requests as received (logs reduced to the
 * allowed fields), so original timestamps and source attributes reach the upstream unchanged.
 */

export type ForwardKind = 'traces' | 'metrics' | 'logs' | 'heartbeat';

interface Entry {
  kind: ForwardKind;
  body: JsonObject;
}

const ROOT: Record<Exclude<ForwardKind, 'heartbeat'>, string> = {
  traces: 'resourceSpans',
  metrics: 'resourceMetrics',
  logs: 'resourceLogs',
};

export interface ForwarderOptions {
  dir: string;
  upstream: string;
  stats: Stats;
  log: (e: Record<string, unknown>) => void;
  maxBytes?: number;
  /** Collectors take bodies up to 16 MiB; a WAL record holds one whole (reduced) request. */
  segmentBytes?: number;
  fsyncIntervalMs?: number;
  /** Ingest waits this long for WAL space before answering 503 (the source keeps the data). */
  blockTimeoutMs?: number;
  batchRecords?: number;
  batchBytes?: number;
  requestTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  random?: Random;
}

/** Statuses by which an upstream refuses what a body holds: sent again as it is, it would be refused again. */
const REFUSED_STATUSES = new Set([400, 413, 422]);

/**
 * An upstream's refusal of what a body holds: a 413, or a 400 or 422 naming the part of the body
 * it refused (an Isthmus collector's `{error, message, path}`). A 400 that names nothing (say,
 * a proxy in the way answering an error page) is not taken for one: it is retried.
 */
class UpstreamRefusal extends Error {
  override readonly name = 'UpstreamRefusal';
}

function isRefusal(status: number, text: string): boolean {
  if (!REFUSED_STATUSES.has(status)) return false;
  if (status === 413) return true;
  try {
    const body: unknown = JSON.parse(text);
    return typeof (body as { path?: unknown } | null)?.path === 'string';
  } catch {
    return false;
  }
}

export class Forwarder {
  readonly #wal: WriteAheadLog;
  readonly #o: ForwarderOptions;
  readonly #backoff: FullJitterBackoff;
  #closing = false;
  readonly #abort = new AbortController();
  #wake: (() => void) | undefined;
  #loop: Promise<void> = Promise.resolve();
  #lastError: string | null = null;

  private constructor(wal: WriteAheadLog, o: ForwarderOptions) {
    this.#wal = wal;
    this.#o = o;
    this.#backoff = new FullJitterBackoff(
      o.backoffBaseMs ?? 100,
      o.backoffMaxMs ?? 2_000,
      o.random ?? systemRandom,
    );
  }

  static async open(o: ForwarderOptions): Promise<Forwarder> {
    const segmentBytes = o.segmentBytes ?? 32 * 1024 * 1024;
    const wal = await WriteAheadLog.open({
      dir: o.dir,
      segmentBytes,
      maxBytes: Math.max(o.maxBytes ?? 1024 * 1024 * 1024, 4 * segmentBytes),
      fsyncIntervalMs: o.fsyncIntervalMs ?? 10,
      // Blocking (not dropping) keeps the no-loss promise: a full log answers 503 and the source
      // keeps the data in its own log.
      whenFull: 'block',
      blockTimeoutMs: o.blockTimeoutMs ?? 5_000,
    });
    const f = new Forwarder(wal, o);
    f.#loop = f.#run();
    return f;
  }

  get upstream(): string {
    return this.#o.upstream;
  }

  /** Appends one request; resolves once it is written, its `durable` once fsynced. */
  enqueue(kind: ForwardKind, body: JsonObject, timeMs: number): Promise<WalAppend> {
    const payload = Buffer.from(JSON.stringify({ kind, body } satisfies Entry));
    return this.#wal.append(payload, timeMs);
  }

  status(): Record<string, unknown> {
    const s = this.#wal.stats();
    return {
      upstream: this.#o.upstream,
      backlogRecords: s.backlogRecords,
      backlogBytes: s.backlogBytes,
      ackedSeq: s.ackedSeq,
      lastSeq: s.lastSeq,
      lastError: this.#lastError,
    };
  }

  updateGauges(): void {
    const s = this.#wal.stats();
    this.#o.stats.set(
      'isthmus_collector_backlog_records',
      'WAL records not yet acked by the upstream.',
      {},
      s.backlogRecords,
    );
    this.#o.stats.set(
      'isthmus_collector_backlog_bytes',
      'WAL bytes not yet acked by the upstream.',
      {},
      s.backlogBytes,
    );
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#abort.abort();
    this.#wake?.();
    const closed = this.#wal.close();
    await this.#loop;
    await closed;
  }

  /**
   * Ships the log in order, a batch at a time, with backoff and no give-up. The exception is a
   * refusal of what a batch holds ({@link UpstreamRefusal}): its records are sent again one at a
   * time, and one refused on its own is skipped (counted and logged; the region keeps it), so
   * that it cannot hold up everything after it, re-sent for ever.
   */
  async #run(): Promise<void> {
    let next = this.#wal.ackedSeq + 1;
    let retry = 0;
    /** While `next` is at most this, records are sent one at a time (a refused batch is searched). */
    let searchUntil = 0;
    while (!this.#closing) {
      let records: WalRecord[];
      try {
        records = await this.#wal.readBatch(
          next,
          next <= searchUntil ? 1 : (this.#o.batchRecords ?? 2_000),
          this.#o.batchBytes ?? 4 * 1024 * 1024,
        );
        if (records.length === 0) {
          await this.#wal.whenDurable(Math.max(next, this.#wal.durableSeq + 1));
          continue;
        }
      } catch (err) {
        if (this.#closing) return;
        this.#o.log({ event: 'forward-wal-error', error: (err as Error).message });
        await this.#sleep(1_000);
        continue;
      }
      const last = (records.at(-1) as WalRecord).seq;
      try {
        await this.#ship(records);
        await this.#wal.ack(last);
        next = last + 1;
        retry = 0;
        this.#lastError = null;
        this.#o.stats.inc(
          'isthmus_collector_shipped_records_total',
          'WAL records acked by the upstream.',
          {},
          records.length,
        );
      } catch (err) {
        if (this.#closing) return;
        this.#lastError = (err as Error).message;
        this.#o.stats.inc(
          'isthmus_collector_ship_failures_total',
          'Failed attempts to ship a batch upstream.',
        );
        if (err instanceof UpstreamRefusal) {
          if (records.length > 1) {
            // Something in this batch is refused: the same records again one at a time.
            searchUntil = last;
            this.#o.log({ event: 'forward-refused', upstream: this.#o.upstream, error: this.#lastError });
            continue;
          }
          this.#o.stats.inc(
            'isthmus_collector_forward_rejected_records_total',
            'Records of the forwarding log the upstream refused on their own: skipped, kept in this region only.',
          );
          this.#o.log({
            event: 'forward-rejected',
            upstream: this.#o.upstream,
            seq: last,
            error: this.#lastError,
          });
          try {
            await this.#wal.ack(last);
          } catch (ackErr) {
            this.#o.log({ event: 'forward-wal-error', error: (ackErr as Error).message });
          }
          next = last + 1;
          retry = 0;
          continue;
        }
        if (retry === 0)
          this.#o.log({ event: 'forward-failed', upstream: this.#o.upstream, error: this.#lastError });
        await this.#sleep(this.#backoff.delayMs(retry++));
      }
    }
  }

  async #ship(records: WalRecord[]): Promise<void> {
    const merged: Record<Exclude<ForwardKind, 'heartbeat'>, JsonObject[]> = {
      traces: [],
      metrics: [],
      logs: [],
    };
    const heartbeats = new Map<string, JsonObject>();
    for (const r of records) {
      const entry = JSON.parse(r.payload.toString('utf8')) as Entry;
      if (entry.kind === 'heartbeat') {
        // Only the latest heartbeat (highest emittedSeq) of each process of a source matters: the
        // losses a heartbeat reports count from its process's start, so a process that ended
        // keeps its last one.
        const key = `${jsonText(entry.body.source)}\n${jsonText(entry.body.instance ?? '')}`;
        const prev = heartbeats.get(key);
        if (!prev || Number(prev.emittedSeq) <= Number(entry.body.emittedSeq))
          heartbeats.set(key, entry.body);
      } else {
        const list = entry.body[ROOT[entry.kind]];
        if (Array.isArray(list)) merged[entry.kind].push(...(list as JsonObject[]));
      }
    }
    // Signals first, heartbeats last: an upstream never sees an emittedSeq ahead of data already sent.
    for (const kind of ['traces', 'metrics', 'logs'] as const) {
      if (merged[kind].length > 0) await this.#post(`/v1/${kind}`, { [ROOT[kind]]: merged[kind] });
    }
    // In emittedSeq order, the source's latest last: once the upstream shows the highest
    // emittedSeq, it has every heartbeat before it, and the losses they report.
    const inOrder = [...heartbeats.values()].sort((a, b) => Number(a.emittedSeq) - Number(b.emittedSeq));
    for (const hb of inOrder) await this.#post('/v1/heartbeat', hb);
  }

  async #post(path: string, body: JsonObject): Promise<void> {
    const res = await fetch(new URL(path, this.#o.upstream), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#o.requestTimeoutMs ?? 10_000)]),
    });
    const text = await res.text();
    if (res.status !== 200) {
      const message = `${path}: upstream answered ${res.status}: ${text.slice(0, 300)}`;
      throw isRefusal(res.status, text) ? new UpstreamRefusal(message) : new Error(message);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}
