import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { IsthmusError } from '../../core/errors.js';
import { addSeq, newSourceState, recordLoss, type SourceState } from '../../telemetry/continuity.js';
import type { Heartbeat, JsonObject, LogItem, PointItem, SourceRef, SpanItem } from '../../telemetry/otlp.js';

/**
 * The collector's store: spans, metric points and log records, each unique by its identity
 * (docs/collector.md), and the continuity state of every source. SQLite in WAL mode with
 * synchronous=FULL: a commit has returned only once it is on disk, so the collector can answer
 * 200 right after it.
 *
 * Retention (docs/collector.md#retention) goes by each item's original timestamp (`time_ns`: a
 * span's end, a point's time, a log record's time): `ingest` does not store what is already older
 * than the window, and `pruneChunk` deletes what has aged out of it, a bounded chunk at a time. The continuity
 * state is never pruned.
 */

export interface IngestResult {
  stored: number;
  duplicates: number;
  /** Already older than the retention window on arrival: counted for continuity, not stored. */
  expired: number;
  /** Per source: [stored, duplicates, expired]. */
  bySource: Map<string, [number, number, number]>;
}

/** The tables retention prunes, as named in `isthmus_collector_pruned_total{signal}`. */
export type PrunedSignal = 'spans' | 'points' | 'logs';
export const PRUNED_SIGNALS: readonly PrunedSignal[] = ['spans', 'points', 'logs'];

export interface StoredSpan {
  span: JsonObject;
  resource: JsonObject;
  source: string;
  region: string | null;
}

export interface StoredPoint {
  series: string;
  name: string;
  source: string;
  metric: JsonObject;
  point: JsonObject;
}

export interface StoredLog {
  recordId: string;
  source: string;
  region: string | null;
  record: JsonObject;
  resource: JsonObject;
}

/** Nanoseconds padded to 20 digits, so that text order is time order. */
const pad = (ns: string) => ns.padStart(20, '0');
const nsToMs = (ns: string) => Number(BigInt(ns) / 1_000_000n);
/** The padded `time_ns` of epoch milliseconds (0 for a time before the epoch). */
export const msToPaddedNs = (ms: number): string =>
  pad((BigInt(Math.max(0, Math.floor(ms))) * 1_000_000n).toString());

type Item = SpanItem | PointItem | LogItem;

export class CollectorStore {
  readonly #db: Database.Database;
  readonly #sources = new Map<string, SourceState>();
  readonly #insertSpan: Database.Statement;
  readonly #insertPoint: Database.Statement;
  readonly #insertLog: Database.Statement;
  readonly #saveSource: Database.Statement;
  /** Per table: deletes up to `@limit` of the oldest rows with `time_ns` < `@before`. */
  readonly #prune: Record<PrunedSignal, Database.Statement>;

  private constructor(db: Database.Database) {
    this.#db = db;
    db.exec(`
      CREATE TABLE IF NOT EXISTS spans (
        trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT NOT NULL,
        name TEXT NOT NULL, time_ns TEXT NOT NULL, source TEXT NOT NULL, region TEXT,
        span TEXT NOT NULL, resource TEXT NOT NULL,
        PRIMARY KEY (trace_id, span_id)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS points (
        series TEXT NOT NULL, time_ns TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL,
        metric TEXT NOT NULL, point TEXT NOT NULL,
        PRIMARY KEY (series, time_ns)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS points_by_name ON points (name, source);
      CREATE TABLE IF NOT EXISTS logs (
        record_id TEXT PRIMARY KEY, time_ns TEXT NOT NULL, source TEXT NOT NULL, region TEXT,
        search TEXT NOT NULL, record TEXT NOT NULL, resource TEXT NOT NULL) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS logs_by_time ON logs (time_ns);
      CREATE INDEX IF NOT EXISTS spans_by_time ON spans (time_ns);
      CREATE INDEX IF NOT EXISTS points_by_time ON points (time_ns);
      CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
    `);
    this.#insertSpan = db.prepare(
      'INSERT OR IGNORE INTO spans VALUES (@traceId, @spanId, @parentSpanId, @name, @timeNs, @source, @region, @span, @resource)',
    );
    this.#insertPoint = db.prepare(
      'INSERT OR IGNORE INTO points VALUES (@series, @timeNs, @name, @source, @metric, @point)',
    );
    this.#insertLog = db.prepare(
      'INSERT OR IGNORE INTO logs VALUES (@recordId, @timeNs, @source, @region, @search, @record, @resource)',
    );
    this.#saveSource = db.prepare('INSERT OR REPLACE INTO sources VALUES (?, ?)');
    // A range on the time index picks the chunk; the delete goes by primary key (the tables are
    // WITHOUT ROWID, and SQLite has no DELETE ... LIMIT by default).
    const prune = (table: string, key: string) =>
      db.prepare(
        `DELETE FROM ${table} WHERE (${key}) IN
         (SELECT ${key} FROM ${table} WHERE time_ns < @before ORDER BY time_ns LIMIT @limit)`,
      );
    this.#prune = {
      spans: prune('spans', 'trace_id, span_id'),
      points: prune('points', 'series, time_ns'),
      logs: prune('logs', 'record_id'),
    };
    for (const row of db.prepare('SELECT state FROM sources').all() as { state: string }[]) {
      const state = JSON.parse(row.state) as SourceState;
      this.#sources.set(state.source, state);
    }
  }

  static open(dataDir: string): CollectorStore {
    mkdirSync(dataDir, { recursive: true });
    const file = path.join(dataDir, 'collector.db');
    let db: Database.Database;
    try {
      db = new Database(file, { timeout: 0 });
      db.pragma('locking_mode = EXCLUSIVE');
      if (db.pragma('journal_mode = WAL', { simple: true }) !== 'wal')
        throw new Error('the file system does not support SQLite WAL mode');
      db.pragma('synchronous = FULL');
      return new CollectorStore(db);
    } catch (err) {
      throw new IsthmusError(
        'ISTHMUS_E_STORE',
        `cannot open the collector store ${file}: ${(err as Error).message} (is another collector using ${dataDir}?)`,
        { cause: err },
      );
    }
  }

  close(): void {
    this.#db.close();
  }

  sources(): SourceState[] {
    return [...this.#sources.values()];
  }

  /**
   * Stores what is new, counts the rest as duplicates, and updates continuity; one durable commit.
   * With `keepFromNs` (padded, see `msToPaddedNs`), an item whose original time is before it is
   * not stored (it would be pruned at the next sweep) but still counts as received.
   */
  ingest(kind: 'traces', items: SpanItem[], nowMs: number, keepFromNs?: string): IngestResult;
  ingest(kind: 'metrics', items: PointItem[], nowMs: number, keepFromNs?: string): IngestResult;
  ingest(kind: 'logs', items: LogItem[], nowMs: number, keepFromNs?: string): IngestResult;
  ingest(
    kind: 'traces' | 'metrics' | 'logs',
    items: Item[],
    nowMs: number,
    keepFromNs?: string,
  ): IngestResult {
    const touched = new Map<string, SourceState>();
    const result: IngestResult = { stored: 0, duplicates: 0, expired: 0, bySource: new Map() };
    const run = this.#db.transaction(() => {
      for (const item of items) {
        const expired = keepFromNs !== undefined && pad(item.timeNs) < keepFromNs;
        const changes = expired ? 0 : this.#insert(kind, item);
        const state = this.#touch(touched, item, nowMs);
        const counts = result.bySource.get(item.source) ?? [0, 0, 0];
        result.bySource.set(item.source, counts);
        if (expired) {
          result.expired++;
          counts[2]++;
        } else if (changes > 0) {
          result.stored++;
          counts[0]++;
          state.records++;
          const ms = nsToMs(item.timeNs);
          if (state.newestRecordMs === null || ms > state.newestRecordMs) state.newestRecordMs = ms;
        } else {
          result.duplicates++;
          counts[1]++;
          state.duplicates++;
        }
        if (item.seq !== undefined) {
          addSeq(state.ranges, item.seq);
          if (item.seq > state.emittedSeq) state.emittedSeq = item.seq;
        }
      }
      for (const s of touched.values()) this.#saveSource.run(s.source, JSON.stringify(s));
    });
    run();
    // Only after the commit: a failed transaction leaves the in-memory accounting as it was.
    for (const s of touched.values()) this.#sources.set(s.source, s);
    return result;
  }

  heartbeat(hb: Heartbeat, nowMs: number): void {
    const state = structuredClone(this.#sources.get(hb.source) ?? newSourceState(hb.source));
    state.region = hb.region;
    state.zone = hb.zone ?? state.zone;
    state.emittedSeq = Math.max(state.emittedSeq, hb.emittedSeq);
    state.lastHeardMs = nowMs;
    state.lastHeartbeatMs = nowMs;
    if (hb.lostSignals) recordLoss(state, hb.instance, hb.lostSignals);
    this.#saveSource.run(state.source, JSON.stringify(state));
    this.#sources.set(state.source, state);
  }

  #touch(touched: Map<string, SourceState>, ref: SourceRef, nowMs: number): SourceState {
    let s = touched.get(ref.source);
    if (!s) {
      s = structuredClone(this.#sources.get(ref.source) ?? newSourceState(ref.source));
      touched.set(ref.source, s);
    }
    s.region = ref.region ?? s.region;
    s.zone = ref.zone ?? s.zone;
    s.lastHeardMs = nowMs;
    return s;
  }

  #insert(kind: 'traces' | 'metrics' | 'logs', item: Item): number {
    const resource = JSON.stringify(item.resource);
    if (kind === 'traces') {
      const s = item as SpanItem;
      return this.#insertSpan.run({
        traceId: s.traceId,
        spanId: s.spanId,
        parentSpanId: s.parentSpanId,
        name: s.name,
        timeNs: pad(s.timeNs),
        source: s.source,
        region: s.region ?? null,
        span: JSON.stringify(s.span),
        resource,
      }).changes;
    }
    if (kind === 'metrics') {
      const p = item as PointItem;
      return this.#insertPoint.run({
        series: p.series,
        timeNs: pad(p.timeNs),
        name: p.name,
        source: p.source,
        metric: JSON.stringify(p.metric),
        point: JSON.stringify(p.point),
      }).changes;
    }
    const l = item as LogItem;
    return this.#insertLog.run({
      recordId: l.recordId,
      timeNs: pad(l.timeNs),
      source: l.source,
      region: l.region ?? null,
      search: l.searchText,
      record: JSON.stringify(l.record),
      resource,
    }).changes;
  }

  /**
   * Deletes up to `limit` of the oldest rows of `signal` whose original time is before `beforeNs`
   * (padded, see `msToPaddedNs`), in one statement (one commit); returns how many. The caller
   * loops, yielding to the event loop between chunks, until fewer than `limit` come back.
   */
  pruneChunk(signal: PrunedSignal, beforeNs: string, limit: number): number {
    return this.#prune[signal].run({ before: beforeNs, limit }).changes;
  }

  trace(traceId: string): StoredSpan[] {
    const rows = this.#db
      .prepare('SELECT span, resource, source, region FROM spans WHERE trace_id = ? ORDER BY time_ns')
      .all(traceId.toLowerCase()) as {
      span: string;
      resource: string;
      source: string;
      region: string | null;
    }[];
    return rows.map((r) => ({
      span: JSON.parse(r.span) as JsonObject,
      resource: JSON.parse(r.resource) as JsonObject,
      source: r.source,
      region: r.region,
    }));
  }

  points(name: string | undefined, source: string | undefined, limit: number): StoredPoint[] {
    const rows = this.#db
      .prepare(
        `SELECT series, name, source, metric, point FROM points
         WHERE (@name IS NULL OR name = @name) AND (@source IS NULL OR source = @source)
         ORDER BY series, time_ns LIMIT @limit`,
      )
      .all({ name: name ?? null, source: source ?? null, limit }) as {
      series: string;
      name: string;
      source: string;
      metric: string;
      point: string;
    }[];
    return rows.map((r) => ({
      series: r.series,
      name: r.name,
      source: r.source,
      metric: JSON.parse(r.metric) as JsonObject,
      point: JSON.parse(r.point) as JsonObject,
    }));
  }

  /** Newest first; `contains` is a case-insensitive substring of the body or an attribute value. */
  logs(contains: string, limit: number): StoredLog[] {
    const rows = this.#db
      .prepare(
        `SELECT record_id, source, region, record, resource FROM logs
         WHERE instr(search, @needle) > 0 ORDER BY time_ns DESC, record_id LIMIT @limit`,
      )
      .all({ needle: contains.toLowerCase(), limit }) as {
      record_id: string;
      source: string;
      region: string | null;
      record: string;
      resource: string;
    }[];
    return rows.map((r) => ({
      recordId: r.record_id,
      source: r.source,
      region: r.region,
      record: JSON.parse(r.record) as JsonObject,
      resource: JSON.parse(r.resource) as JsonObject,
    }));
  }

  counts(): { spans: number; points: number; logs: number } {
    const n = (table: string) =>
      (this.#db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { spans: n('spans'), points: n('points'), logs: n('logs') };
  }
}
