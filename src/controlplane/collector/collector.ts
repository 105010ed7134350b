import path from 'node:path';
import type { IncomingMessage, Server } from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { systemClock, type Clock } from '../../core/clock.js';
import { Stats } from '../../dataplane/stats.js';
import { accessLogsToOtlp } from '../../telemetry/access-log.js';
import { ACCESS_LOG_BINARY_TYPE, binaryAccessLogsToOtlp } from '../../telemetry/access-log-binary.js';
import { AlertEngine, type AlertRule } from '../../telemetry/alerts.js';
import { AlertWebhook } from '../../telemetry/alert-webhook.js';
import { continuityView, regionViews } from '../../telemetry/continuity.js';
import {
  OtlpError,
  parseHeartbeat,
  parseLogs,
  parseMetrics,
  parseTraces,
  redactLogRecord,
  jsonText,
  type Json,
  type JsonObject,
  type LogItem,
} from '../../telemetry/otlp.js';
import type { WalAppend } from '../../telemetry/wal/index.js';
import {
  ApiError,
  createApiServer,
  isMediaType,
  listen,
  readBody,
  readJson,
  sendJson,
  sendText,
} from '../http-api.js';
import { Forwarder, type ForwardKind } from './forwarder.js';
import { CollectorStore, msToPaddedNs, PRUNED_SIGNALS, type StoredLog } from './store.js';

/**
 * The telemetry collector (docs/collector.md): OTLP/HTTP JSON ingest with dedupe into SQLite,
 * continuity per source, forwarding upstream through a write-ahead log, and queries — traces,
 * metrics, and log search that a global collector federates to the region collectors.
 */

export interface CollectorOptions {
  region: string;
  dataDir: string;
  listen: string;
  /** Another collector (normally the global one) to forward everything stored to. */
  upstream?: string;
  /** Region collectors a global collector federates log searches to: name → base URL. */
  regions?: Record<string, string>;
  heartbeatIntervalMs: number;
  /** Log-record fields allowed out of the region (telemetry.residency.logFieldsAllowedOut). */
  logFieldsAllowedOut: readonly string[];
  federationTimeoutMs?: number;
  maxBodyBytes?: number;
  log?: (e: Record<string, unknown>) => void;
  now?: () => number;
  /** Alert rules evaluated here (docs/collector.md#alerts), every `alertIntervalMs` (10 s). */
  alertRules?: readonly AlertRule[];
  alertIntervalMs?: number;
  /** Receives each firing/resolved event as a JSON POST. */
  alertWebhook?: string;
  /** For alert evaluation; tests pass a ManualClock and call `alerts.evaluate()`. */
  clock?: Clock;
  /**
   * How long items are kept, by their original timestamp (docs/collector.md#retention), ms;
   * 0 or undefined keeps everything (`isthmus collector` defaults to 7 days). Swept at start and
   * every minute; see `pruneNow`.
   */
  retentionMs?: number;
  /** Rows deleted per statement by a sweep (5,000); tests make it small. */
  pruneChunkRows?: number;
}

/** What one retention sweep deleted, per table, and in how many chunks (statements). */
export interface PruneResult {
  spans: number;
  points: number;
  logs: number;
  chunks: number;
}

const PRUNE_INTERVAL_MS = 60_000;
const PRUNE_CHUNK_ROWS = 5_000;
const PRUNED_HELP = 'Records deleted by retention (older than the window by their original time).';

const MAX_BODY_BYTES = 16 * 1024 * 1024;
const HEX32 = /^[0-9a-fA-F]{32}$/;

const kinds = { traces: parseTraces, metrics: parseMetrics, logs: parseLogs } as const;

export class Collector {
  readonly stats: Stats;
  readonly store: CollectorStore;
  readonly forwarder: Forwarder | undefined;
  readonly #o: CollectorOptions;
  readonly #server: Server;
  readonly #allowed: ReadonlySet<string>;
  readonly #now: () => number;
  /** Undefined without rules. Evaluated here, so a cut-off region collector keeps alerting. */
  readonly alerts: AlertEngine | undefined;
  readonly #webhook: AlertWebhook | undefined;
  #alertTimer: NodeJS.Timeout | undefined;
  readonly #retentionMs: number;
  #pruneTimer: NodeJS.Timeout | undefined;
  /** The sweep running now, if any: one at a time, and `close` waits for it. */
  #sweep: Promise<PruneResult> | undefined;
  #lastSweepMs: number | null = null;
  #closing = false;
  address = '';

  private constructor(
    o: CollectorOptions,
    store: CollectorStore,
    forwarder: Forwarder | undefined,
    stats: Stats,
  ) {
    this.#o = o;
    this.store = store;
    this.forwarder = forwarder;
    this.stats = stats;
    this.#allowed = new Set(o.logFieldsAllowedOut);
    this.#now = o.now ?? Date.now;
    this.#retentionMs = o.retentionMs ?? 0;
    if (!(this.#retentionMs >= 0) || !Number.isFinite(this.#retentionMs))
      throw new RangeError(`retentionMs must be a finite number >= 0, got ${this.#retentionMs}`);
    const chunk = o.pruneChunkRows ?? PRUNE_CHUNK_ROWS;
    if (!Number.isSafeInteger(chunk) || chunk < 1)
      throw new RangeError(`pruneChunkRows must be a whole number >= 1, got ${chunk}`);
    if (this.#retentionMs > 0)
      for (const signal of PRUNED_SIGNALS)
        this.stats.inc('isthmus_collector_pruned_total', PRUNED_HELP, { signal }, 0);
    this.#server = createApiServer((req, res, url) => this.#handle(req, res, url), o.log);
    this.#webhook =
      o.alertWebhook === undefined
        ? undefined
        : new AlertWebhook({
            url: o.alertWebhook,
            onFailure: (e, error) => {
              this.stats.inc(
                'isthmus_collector_alert_webhook_failures_total',
                'Alert events the webhook did not accept after every retry.',
              );
              o.log?.({ event: 'alert-webhook-failed', rule: e.rule, kind: e.kind, error });
            },
          });
    this.alerts =
      o.alertRules === undefined || o.alertRules.length === 0
        ? undefined
        : new AlertEngine({
            rules: o.alertRules,
            clock: o.clock ?? systemClock,
            signals: {
              backlogBytes: () => {
                const b = this.forwarder?.status().backlogBytes;
                return typeof b === 'number' ? b : undefined;
              },
              stale: (source) => this.continuity().sources.find((s) => s.source === source)?.stale,
            },
            onEvent: (e) => {
              o.log?.({ event: `alert-${e.kind}`, rule: e.rule, severity: e.severity });
              this.#webhook?.send(e);
            },
          });
    if (this.alerts) {
      const engine = this.alerts;
      this.#alertTimer = setInterval(() => engine.evaluate(), o.alertIntervalMs ?? 10_000);
      this.#alertTimer.unref();
    }
  }

  static async start(o: CollectorOptions): Promise<Collector> {
    const store = CollectorStore.open(o.dataDir);
    let forwarder: Forwarder | undefined;
    try {
      const stats = new Stats({ region: o.region });
      if (o.upstream) {
        forwarder = await Forwarder.open({
          dir: path.join(o.dataDir, 'wal'),
          upstream: o.upstream,
          stats,
          log: o.log ?? (() => undefined),
        });
      }
      // One registry: the forwarder counts into the collector's /metrics.
      const c = new Collector(o, store, forwarder, stats);
      c.address = await listen(c.#server, o.listen);
      c.#startSweeps();
      return c;
    } catch (err) {
      await forwarder?.close().catch(() => undefined);
      store.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#alertTimer);
    this.#closing = true;
    clearInterval(this.#pruneTimer);
    // A running sweep stops after its current chunk; the store must outlive it.
    await this.#sweep?.catch(() => undefined);
    await this.#webhook?.settle(true);
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    await this.forwarder?.close();
    this.store.close();
  }

  async #handle(req: IncomingMessage, res: Parameters<typeof sendJson>[0], url: URL): Promise<void> {
    const p = url.pathname;
    if (req.method === 'POST') {
      const kind = /^\/v1\/(traces|metrics|logs)$/.exec(p)?.[1] as keyof typeof kinds | undefined;
      if (kind) return sendJson(res, 200, await this.#ingest(kind, req));
      if (p === '/v1/access-logs') return sendJson(res, 200, await this.#ingestAccessLogs(req));
      if (p === '/v1/heartbeat') return sendJson(res, 200, await this.#heartbeat(req));
      throw new ApiError(404, 'ISTHMUS_E_NOT_FOUND', `no POST ${p}`);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new ApiError(405, 'ISTHMUS_E_USAGE', 'use GET or POST');
    if (p === '/healthz') return sendJson(res, 200, { ok: true });
    if (p === '/metrics') return sendText(res, 200, this.#prometheus());
    if (p === '/v1/alerts') return sendJson(res, 200, { rules: this.alerts?.status() ?? [] });
    if (p === '/v1/alerts/events') return sendJson(res, 200, { events: this.alerts?.events() ?? [] });
    if (p === '/v1/continuity') return sendJson(res, 200, this.continuity());
    if (p === '/v1/regions')
      return sendJson(res, 200, { regions: regionViews(this.continuity().sources, this.#now()) });
    if (p === '/v1/sources')
      return sendJson(res, 200, {
        sources: this.continuity().sources.map((s) => ({
          source: s.source,
          region: s.region,
          zone: s.zone,
          lastHeardMs: s.lastHeardMs,
          stale: s.stale,
        })),
      });
    if (p === '/v1/summary')
      return sendJson(res, 200, {
        region: this.#o.region,
        stored: this.store.counts(),
        retentionMs: this.#retentionMs,
        lastSweepMs: this.#lastSweepMs,
        forwarding: this.forwarder?.status() ?? null,
      });
    const trace = /^\/v1\/traces\/([^/]+)$/.exec(p)?.[1];
    if (trace !== undefined) return sendJson(res, 200, this.#trace(trace));
    if (p === '/v1/metrics') return sendJson(res, 200, this.#metrics(url));
    if (p === '/v1/logs') return sendJson(res, 200, await this.#logs(url));
    throw new ApiError(404, 'ISTHMUS_E_NOT_FOUND', `no GET ${p}`);
  }

  async #read(req: IncomingMessage, signal: string): Promise<Record<string, unknown>>;
  async #read(req: IncomingMessage, signal: string, type: string): Promise<Buffer>;
  async #read(
    req: IncomingMessage,
    signal: string,
    type?: string,
  ): Promise<Record<string, unknown> | Buffer> {
    const max = this.#o.maxBodyBytes ?? MAX_BODY_BYTES;
    try {
      return await (type === undefined ? readJson(req, max) : readBody(req, max, type));
    } catch (err) {
      this.stats.inc(
        'isthmus_collector_rejected_total',
        'Requests refused (malformed, too large, not JSON).',
        {
          signal,
        },
      );
      throw err;
    }
  }

  #invalid(err: unknown, signal: string): never {
    if (err instanceof OtlpError) {
      this.stats.inc(
        'isthmus_collector_rejected_total',
        'Requests refused (malformed, too large, not JSON).',
        {
          signal,
        },
      );
      throw new ApiError(400, err.code, err.message, { path: err.path });
    }
    throw err;
  }

  /** Stores (and forwards) the items of one OTLP body. */
  async #ingest(kind: keyof typeof kinds, req: IncomingMessage): Promise<Record<string, never>> {
    const received = await this.#read(req, kind);
    let items: ReturnType<(typeof kinds)[typeof kind]>;
    try {
      items = kinds[kind](received);
    } catch (err) {
      this.#invalid(err, kind);
    }
    await this.#keep(kind, received as JsonObject, items);
    return {};
  }

  /**
   * A compact access-log body (binary format 4, or JSON): turned into the OTLP bodies it stands
   * for (log records, and the spans of sampled records), all checked before anything is kept,
   * then kept as those would be.
   */
  async #ingestAccessLogs(req: IncomingMessage): Promise<Record<string, never>> {
    const binary = isMediaType(req, ACCESS_LOG_BINARY_TYPE);
    const received = binary
      ? await this.#read(req, 'logs', ACCESS_LOG_BINARY_TYPE)
      : await this.#read(req, 'logs');
    const parts: [
      kind: keyof typeof kinds,
      body: JsonObject,
      items: ReturnType<(typeof kinds)[keyof typeof kinds]>,
    ][] = [];
    try {
      const { logs, traces } = binary
        ? binaryAccessLogsToOtlp(received as Buffer)
        : accessLogsToOtlp(received);
      parts.push(['logs', logs, parseLogs(logs)]);
      if (traces) parts.push(['traces', traces, parseTraces(traces)]);
    } catch (err) {
      this.#invalid(err, 'logs');
    }
    for (const [kind, body, items] of parts) await this.#keep(kind, body, items);
    return {};
  }

  /**
   * Forwards and stores the items of one body, counts them, and returns once both are durable.
   */
  async #keep(
    kind: keyof typeof kinds,
    body: JsonObject,
    items: ReturnType<(typeof kinds)[keyof typeof kinds]>,
  ): Promise<void> {
    const now = this.#now();
    const keepFromNs = this.#retentionMs > 0 ? msToPaddedNs(now - this.#retentionMs) : undefined;
    // Forward first, store second, answer once both are durable: a crash in between leaves the
    // source without a 200 (it resends; both stores dedupe), never a 200 for something lost.
    let forwarded: WalAppend | undefined;
    if (this.forwarder && items.length > 0) {
      const out = kind === 'logs' ? this.#reducedLogs(body, items as LogItem[]) : body;
      forwarded = await this.#enqueue(kind, out, now);
    }
    const result =
      kind === 'traces'
        ? this.store.ingest('traces', items as ReturnType<typeof parseTraces>, now, keepFromNs)
        : kind === 'metrics'
          ? this.store.ingest('metrics', items as ReturnType<typeof parseMetrics>, now, keepFromNs)
          : this.store.ingest('logs', items as LogItem[], now, keepFromNs);
    await this.#durable(forwarded);
    if (kind === 'metrics') this.alerts?.hops.observe(items as ReturnType<typeof parseMetrics>);
    for (const [source, [stored, dups, expired]] of result.bySource) {
      if (expired)
        this.stats.inc(
          'isthmus_collector_expired_total',
          'Records already older than the retention window on arrival: counted as received, not stored.',
          { signal: kind, source },
          expired,
        );
      if (stored)
        this.stats.inc(
          'isthmus_collector_received_total',
          'Records stored (spans, points, log records).',
          {
            signal: kind,
            source,
          },
          stored,
        );
      if (dups)
        this.stats.inc(
          'isthmus_collector_duplicates_total',
          'Records received again and dropped.',
          {
            signal: kind,
            source,
          },
          dups,
        );
    }
  }

  /** The sweep at start and then every minute (unref'd: it never keeps the process alive). */
  #startSweeps(): void {
    if (this.#retentionMs === 0) return;
    const sweep = () => {
      if (this.#sweep || this.#closing) return; // the previous one is still going: skip a turn
      this.pruneNow().catch((err: unknown) =>
        this.#o.log?.({ event: 'prune-failed', error: (err as Error).message }),
      );
    };
    sweep();
    this.#pruneTimer = setInterval(sweep, PRUNE_INTERVAL_MS);
    this.#pruneTimer.unref();
  }

  /**
   * One retention sweep now (after the running one, if any): deletes spans, metric points and
   * log records whose original time is older than now − retention, at most `pruneChunkRows` per
   * statement, yielding to the event loop between statements so ingest and queries go on. A no-op
   * with retention 0. Continuity state is never pruned.
   */
  async pruneNow(): Promise<PruneResult> {
    while (this.#sweep) await this.#sweep.catch(() => undefined);
    const run = this.#runSweep();
    this.#sweep = run;
    try {
      return await run;
    } finally {
      if (this.#sweep === run) this.#sweep = undefined;
    }
  }

  async #runSweep(): Promise<PruneResult> {
    const result: PruneResult = { spans: 0, points: 0, logs: 0, chunks: 0 };
    if (this.#retentionMs === 0 || this.#closing) return result;
    const now = this.#now();
    const beforeNs = msToPaddedNs(now - this.#retentionMs);
    const limit = this.#o.pruneChunkRows ?? PRUNE_CHUNK_ROWS;
    for (const signal of PRUNED_SIGNALS) {
      for (;;) {
        if (this.#closing) return result;
        const n = this.store.pruneChunk(signal, beforeNs, limit);
        result.chunks++;
        result[signal] += n;
        if (n > 0) this.stats.inc('isthmus_collector_pruned_total', PRUNED_HELP, { signal }, n);
        if (n < limit) break;
        await nextTurn();
      }
    }
    this.#lastSweepMs = now;
    return result;
  }

  async #enqueue(kind: ForwardKind, body: JsonObject, now: number): Promise<WalAppend> {
    try {
      return await (this.forwarder as Forwarder).enqueue(kind, body, now);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ISTHMUS_E_WAL_FULL')
        throw new ApiError(503, code, `the forwarding log is full (upstream unreachable?): retry later`);
      throw new ApiError(503, 'ISTHMUS_E_IO', `the forwarding log failed: ${(err as Error).message}`);
    }
  }

  /** Waits for the forwarding record's fsync; a failed log is a 503 (the source resends), not a 400. */
  async #durable(forwarded: WalAppend | undefined): Promise<void> {
    try {
      await forwarded?.durable;
    } catch (err) {
      throw new ApiError(503, 'ISTHMUS_E_IO', `the forwarding log failed: ${(err as Error).message}`);
    }
  }

  /** The logs request with each record reduced to the fields allowed out of the region. */
  #reducedLogs(body: JsonObject, items: LogItem[]): JsonObject {
    let i = 0;
    const resourceLogs = (Array.isArray(body.resourceLogs) ? body.resourceLogs : []).map((rl) => {
      const r = rl as JsonObject;
      return {
        ...r,
        scopeLogs: (Array.isArray(r.scopeLogs) ? r.scopeLogs : []).map((sl) => {
          const s = sl as JsonObject;
          return {
            ...s,
            logRecords: (Array.isArray(s.logRecords) ? s.logRecords : []).map(() => {
              const item = items[i++] as LogItem;
              return redactLogRecord(item.record, this.#allowed, item.recordId);
            }),
          };
        }),
      };
    });
    return { resourceLogs };
  }

  async #heartbeat(req: IncomingMessage): Promise<Record<string, never>> {
    const body = await this.#read(req, 'heartbeat');
    let hb: ReturnType<typeof parseHeartbeat>;
    try {
      hb = parseHeartbeat(body);
    } catch (err) {
      this.#invalid(err, 'heartbeat');
    }
    const now = this.#now();
    const forwarded = this.forwarder ? await this.#enqueue('heartbeat', body as JsonObject, now) : undefined;
    this.store.heartbeat(hb, now);
    await this.#durable(forwarded);
    return {};
  }

  continuity() {
    const now = this.#now();
    return {
      region: this.#o.region,
      heartbeatIntervalMs: this.#o.heartbeatIntervalMs,
      nowMs: now,
      sources: this.store
        .sources()
        .map((s) => continuityView(s, now, this.#o.heartbeatIntervalMs))
        .sort((a, b) => (a.source < b.source ? -1 : 1)),
    };
  }

  #trace(traceId: string) {
    if (!HEX32.test(traceId))
      throw new ApiError(400, 'ISTHMUS_E_INVALID_VALUE', 'a trace id is 32 hex digits');
    const spans = this.store.trace(traceId);
    if (spans.length === 0) throw new ApiError(404, 'ISTHMUS_E_NOT_FOUND', `no spans of trace ${traceId}`);
    const ids = new Set(spans.map((s) => jsonText(s.span.spanId)));
    const missingParents = [
      ...new Set(spans.map((s) => jsonText(s.span.parentSpanId)).filter((p) => p !== '' && !ids.has(p))),
    ];
    const regions = [...new Set(spans.map((s) => s.region).filter((r): r is string => r !== null))].sort();
    return {
      traceId: traceId.toLowerCase(),
      incomplete: missingParents.length > 0,
      missingParents,
      regions,
      spans: spans.map((s) => ({ ...s.span, source: s.source, region: s.region, resource: s.resource })),
    };
  }

  #metrics(url: URL) {
    const name = url.searchParams.get('name') ?? undefined;
    const source = url.searchParams.get('source') ?? undefined;
    const limit = boundedInt(url.searchParams.get('limit'), 10_000, 100_000);
    const series = new Map<
      string,
      { name: string; source: string; metric: JsonObject; attributes: Json; points: JsonObject[] }
    >();
    for (const p of this.store.points(name, source, limit)) {
      let s = series.get(p.series);
      if (!s) {
        s = {
          name: p.name,
          source: p.source,
          metric: p.metric,
          attributes: p.point.attributes ?? [],
          points: [],
        };
        series.set(p.series, s);
      }
      const { attributes: _attributes, ...point } = p.point;
      s.points.push(point);
    }
    return { series: [...series.values()] };
  }

  #redact(log: StoredLog): StoredLog {
    return { ...log, record: redactLogRecord(log.record, this.#allowed, log.recordId) };
  }

  async #logs(url: URL) {
    const contains = url.searchParams.get('contains') ?? '';
    const limit = boundedInt(url.searchParams.get('limit'), 100, 10_000);
    const redacted = url.searchParams.get('redacted') === '1';
    const regions = this.#o.regions;
    if (!regions || Object.keys(regions).length === 0) {
      const logs = this.store.logs(contains, limit).map((l) => ({ ...(redacted ? this.#redact(l) : l) }));
      return { region: this.#o.region, redacted, partial: false, unanswered: [], records: logs };
    }
    // Federated: each region searches its own (full) logs and sends only allowed fields out; the
    // answer is reduced again here, so a region with a wider list cannot leak through.
    const timeoutMs = this.#o.federationTimeoutMs ?? 2_000;
    const answers = await Promise.all(
      Object.entries(regions).map(async ([region, base]) => {
        try {
          const q = new URL('/v1/logs', base);
          q.searchParams.set('contains', contains);
          q.searchParams.set('limit', String(limit));
          q.searchParams.set('redacted', '1');
          const res = await fetch(q, { signal: AbortSignal.timeout(timeoutMs) });
          if (res.status !== 200) throw new Error(`answered ${res.status}`);
          const body = (await res.json()) as { records: StoredLog[] };
          return {
            region,
            records: body.records.map((r) => ({ ...this.#redact(r), region: r.region ?? region })),
          };
        } catch (err) {
          this.#o.log?.({ event: 'federation-unanswered', region, error: (err as Error).message });
          return { region, records: undefined };
        }
      }),
    );
    const unanswered = answers.filter((a) => a.records === undefined).map((a) => a.region);
    const records = answers
      .flatMap((a) => a.records ?? [])
      .sort((a, b) => {
        const ta = BigInt(jsonText(a.record.timeUnixNano) || '0');
        const tb = BigInt(jsonText(b.record.timeUnixNano) || '0');
        return ta > tb ? -1 : ta < tb ? 1 : 0;
      })
      .slice(0, limit);
    return { region: this.#o.region, redacted: true, partial: unanswered.length > 0, unanswered, records };
  }

  #prometheus(): string {
    this.forwarder?.updateGauges();
    for (const s of this.continuity().sources) {
      this.stats.set(
        'isthmus_collector_source_gaps',
        'Seqs a source emitted that have not arrived.',
        { source: s.source },
        s.gaps,
      );
      this.stats.set(
        'isthmus_collector_source_lag_ms',
        'Now minus the newest original timestamp of a source, ms.',
        { source: s.source },
        s.lagMs ?? -1,
      );
      this.stats.set(
        'isthmus_collector_source_stale',
        '1 when a source was silent for two heartbeat intervals.',
        { source: s.source },
        s.stale ? 1 : 0,
      );
    }
    return this.stats.prometheus();
  }
}

function boundedInt(text: string | null, fallback: number, max: number): number {
  if (text === null || text === '') return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    throw new ApiError(400, 'ISTHMUS_E_INVALID_VALUE', `limit must be an integer in 1..${max}`);
  return n;
}
