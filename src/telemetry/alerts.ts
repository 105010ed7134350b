import type { Clock } from '../core/clock.js';
import { IsthmusError } from '../core/errors.js';
import type { JsonObject, PointItem } from './otlp.js';

/**
 * Alert rules a collector evaluates on what it stores (docs/collector.md#alerts). Pure logic:
 * the expression parser, the signals computed from recent hop metric points and the collector's
 * own state, and the inactive → pending → firing → resolved state machine, all on an injected
 * Clock. A signal the collector does not have makes its rule `unknown`, never false: a rule that
 * cannot see its data must not look healthy.
 */

export type Severity = 'info' | 'warning' | 'critical';
export const SEVERITIES: readonly Severity[] = ['info', 'warning', 'critical'];

export type SignalName = 'p99_latency_ms' | 'error_rate' | 'backlog_bytes' | 'backlog_growth' | 'stale';
const COMPARED: ReadonlySet<string> = new Set([
  'p99_latency_ms',
  'error_rate',
  'backlog_bytes',
  'backlog_growth',
]);

export type Expr =
  | { op: 'and' | 'or'; left: Expr; right: Expr }
  | { op: 'gt'; signal: SignalName; arg: string; threshold: number }
  | { op: 'stale'; arg: string };

export interface AlertRule {
  name: string;
  /** The expression as written, shown in answers. */
  exprText: string;
  expr: Expr;
  forMs: number;
  severity: Severity;
  summary: string;
}

/** The argument of backlog_bytes / backlog_growth naming the collector's own forwarding log. */
export const SELF = 'self';

export class AlertExprError extends IsthmusError {
  constructor(
    readonly rule: string,
    readonly column: number,
    detail: string,
  ) {
    super('ISTHMUS_E_INVALID_VALUE', `alert rule "${rule}": expr column ${column}: ${detail}`);
  }
}

interface Token {
  kind: 'word' | 'string' | 'punct';
  text: string;
  /** 1-based column in the expression. */
  col: number;
}

/** Words cover names (`proxy/frontend-1@eu-west`), numbers and keywords; the parser tells them apart. */
function tokenize(rule: string, text: string): Token[] {
  const out: Token[] = [];
  const re = /(\s+)|([A-Za-z0-9_.:@/+-]+)|("(?:[^"\\]|\\.)*")|([()>])/y;
  while (re.lastIndex < text.length) {
    const at = re.lastIndex;
    const m = re.exec(text);
    if (!m) throw new AlertExprError(rule, at + 1, `unexpected ${JSON.stringify(text[at])}`);
    const col = at + 1;
    if (m[2] !== undefined) out.push({ kind: 'word', text: m[2], col });
    else if (m[3] !== undefined) out.push({ kind: 'string', text: JSON.parse(m[3]) as string, col });
    else if (m[4] !== undefined) out.push({ kind: 'punct', text: m[4], col });
  }
  return out;
}

const NUMBER = /^\d+(?:\.\d+)?$/;

/**
 * Parses `p99_latency_ms(svc) > N`, `error_rate(svc) > R`, `backlog_bytes(src) > N`,
 * `backlog_growth(src) > N`, `stale(src)`, combined with `and` / `or` (and binding tighter) and
 * parentheses. Errors name the rule and the 1-based column.
 */
export function parseExpr(rule: string, text: string): Expr {
  const tokens = tokenize(rule, text);
  let i = 0;
  const end = text.length + 1;
  const peek = () => tokens[i];
  const fail = (t: Token | undefined, what: string): never => {
    throw new AlertExprError(rule, t?.col ?? end, `${what}, found ${t ? JSON.stringify(t.text) : 'the end'}`);
  };
  const expect = (text: string) => {
    const t = tokens[i];
    if (t?.kind !== 'punct' || t.text !== text) fail(t, `expected "${text}"`);
    i++;
  };
  const orExpr = (): Expr => {
    let left = andExpr();
    while (peek()?.kind === 'word' && peek()?.text === 'or') {
      i++;
      left = { op: 'or', left, right: andExpr() };
    }
    return left;
  };
  const andExpr = (): Expr => {
    let left = atom();
    while (peek()?.kind === 'word' && peek()?.text === 'and') {
      i++;
      left = { op: 'and', left, right: atom() };
    }
    return left;
  };
  const atom = (): Expr => {
    const t = peek();
    if (t?.kind === 'punct' && t.text === '(') {
      i++;
      const inner = orExpr();
      expect(')');
      return inner;
    }
    if (t?.kind !== 'word' || (!COMPARED.has(t.text) && t.text !== 'stale'))
      return fail(
        t,
        'expected p99_latency_ms(service), error_rate(service), backlog_bytes(source), backlog_growth(source) or stale(source)',
      );
    i++;
    expect('(');
    const arg = tokens[i];
    if (arg?.kind !== 'string' && arg?.kind !== 'word') return fail(arg, 'expected a service or source name');
    i++;
    expect(')');
    if (t.text === 'stale') return { op: 'stale', arg: arg.text };
    if (t.text.startsWith('backlog_') && arg.text !== SELF)
      throw new AlertExprError(
        rule,
        arg.col,
        `${t.text} is known only for the collector's own forwarding log: write ${t.text}(${SELF}) (heartbeats carry no byte counts)`,
      );
    const gt = peek();
    if (gt?.kind !== 'punct' || gt.text !== '>') return fail(gt, `expected "> NUMBER" after ${t.text}(...)`);
    i++;
    const n = peek();
    if (n?.kind !== 'word' || !NUMBER.test(n.text)) return fail(n, 'expected a number');
    i++;
    const threshold = Number(n.text);
    if (t.text === 'error_rate' && threshold > 1)
      throw new AlertExprError(rule, n.col, 'error_rate is a ratio in 0..1');
    return { op: 'gt', signal: t.text as SignalName, arg: arg.text, threshold };
  };
  if (tokens.length === 0) throw new AlertExprError(rule, 1, 'the expression is empty');
  const e = orExpr();
  if (i < tokens.length) fail(tokens[i], 'expected "and", "or" or the end');
  return e;
}

/** What a rule's signals are computed from; every getter answers undefined when it has no data. */
export interface SignalSource {
  /** The collector's forwarding log, bytes not yet acked; undefined without an upstream. */
  backlogBytes(): number | undefined;
  /** Whether a source is stale; undefined for a source never heard of. */
  stale(source: string): boolean | undefined;
}

type Cumulative = { timeMs: number; startMs: number; values: number[] };

const HOP_DURATION = 'isthmus.hop.duration';
const HOP_REQUESTS = 'isthmus.hop.requests';
const HOP_ERRORS = 'isthmus.hop.errors';

function attr(point: JsonObject, key: string): string | undefined {
  const list = point.attributes;
  if (!Array.isArray(list)) return undefined;
  for (const a of list) {
    const o = a as JsonObject;
    if (o.key === key) {
      const v = o.value as JsonObject | null;
      return typeof v?.stringValue === 'string' ? v.stringValue : undefined;
    }
  }
  return undefined;
}

const nsToMs = (v: unknown): number => (typeof v === 'string' || typeof v === 'number' ? Number(v) / 1e6 : 0);
const num = (v: unknown): number => (typeof v === 'string' || typeof v === 'number' ? Number(v) : NaN);

/**
 * Recent hop metric points (the proxies' cumulative `isthmus.hop.*` sums and histogram), kept
 * in memory for one window: enough to compute rates and a quantile without reading the store.
 */
export class HopWindow {
  /** series → time-ordered points, each unique by time (a resent point replaces itself). */
  readonly #series = new Map<
    string,
    { name: string; service: string; unitMs: number; bounds: number[]; points: Map<number, Cumulative> }
  >();

  constructor(readonly windowMs: number) {}

  observe(items: readonly PointItem[]): void {
    for (const p of items) {
      if (p.name !== HOP_DURATION && p.name !== HOP_REQUESTS && p.name !== HOP_ERRORS) continue;
      const service = attr(p.point, 'service');
      if (service === undefined) continue;
      let s = this.#series.get(p.series);
      if (!s) {
        const unit = typeof p.metric.unit === 'string' ? p.metric.unit : 's';
        s = {
          name: p.name,
          service,
          unitMs: unit === 'ms' ? 1 : 1000,
          bounds: Array.isArray(p.point.explicitBounds) ? p.point.explicitBounds.map(num) : [],
          points: new Map(),
        };
        this.#series.set(p.series, s);
      }
      const values =
        p.name === HOP_DURATION
          ? (Array.isArray(p.point.bucketCounts) ? p.point.bucketCounts : []).map(num)
          : [num(p.point.asInt ?? p.point.asDouble)];
      if (values.some((v) => !Number.isFinite(v))) continue;
      const timeMs = nsToMs(p.point.timeUnixNano);
      s.points.set(timeMs, { timeMs, startMs: nsToMs(p.point.startTimeUnixNano), values });
    }
  }

  /** Drops points older than two windows (one window back is needed as the rate's baseline). */
  prune(nowMs: number): void {
    for (const [key, s] of this.#series) {
      for (const t of s.points.keys()) if (t < nowMs - 2 * this.windowMs) s.points.delete(t);
      if (s.points.size === 0) this.#series.delete(key);
    }
  }

  /**
   * Per series of `name` for `service`, the increase over the window ending at `nowMs`: newest
   * point minus the newest one at or before the window's start (or zero when the process started
   * inside the window). A counter reset counts the newest values whole. Undefined without data.
   */
  #increase(
    name: string,
    service: string,
    nowMs: number,
  ): { deltas: number[]; bounds: number[]; unitMs: number } | undefined {
    let total: number[] | undefined;
    let bounds: number[] = [];
    let unitMs = 1000;
    for (const s of this.#series.values()) {
      if (s.name !== name || s.service !== service) continue;
      const pts = [...s.points.values()].filter((p) => p.timeMs <= nowMs).sort((a, b) => a.timeMs - b.timeMs);
      const last = pts.at(-1);
      if (!last || last.timeMs < nowMs - this.windowMs) continue;
      const from = nowMs - this.windowMs;
      const base = [...pts].reverse().find((p) => p.timeMs <= from && p.startMs === last.startMs);
      let delta: number[];
      if (base) delta = last.values.map((v, k) => v - (base.values[k] ?? 0));
      else if (last.startMs >= from) delta = last.values;
      else {
        // No point old enough: the oldest one in the window is the best baseline there is.
        const first = pts.find((p) => p.timeMs >= from && p.startMs === last.startMs);
        if (!first || first === last) continue;
        delta = last.values.map((v, k) => v - (first.values[k] ?? 0));
      }
      if (delta.some((d) => d < 0)) delta = last.values;
      if (!total) {
        total = delta.slice();
        bounds = s.bounds;
        unitMs = s.unitMs;
      } else if (total.length === delta.length) total = total.map((v, k) => v + (delta[k] ?? 0));
    }
    return total && { deltas: total, bounds, unitMs };
  }

  /** Errors / requests over the window; undefined without points or without requests. */
  errorRate(service: string, nowMs: number): number | undefined {
    const req = this.#increase(HOP_REQUESTS, service, nowMs)?.deltas[0];
    const err = this.#increase(HOP_ERRORS, service, nowMs)?.deltas[0];
    if (req === undefined || err === undefined || req <= 0) return undefined;
    return err / req;
  }

  /** The 99th percentile in ms, interpolated within a bucket like PromQL's histogram_quantile. */
  p99LatencyMs(service: string, nowMs: number): number | undefined {
    const h = this.#increase(HOP_DURATION, service, nowMs);
    // No request in the window has no latency: unknown, not 0.
    if (!h || h.deltas.reduce((a, b) => a + b, 0) <= 0) return undefined;
    return quantile(0.99, h.bounds, h.deltas) * h.unitMs;
  }
}

/** `q`-quantile of per-bucket counts (the last is +Inf); NaN when there are none. */
export function quantile(q: number, bounds: readonly number[], counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return NaN;
  const rank = q * total;
  let seen = 0;
  for (let k = 0; k < counts.length; k++) {
    const c = counts[k] ?? 0;
    if (seen + c >= rank && c > 0) {
      // Past the last bound the answer is that bound, as histogram_quantile does.
      if (k >= bounds.length) return bounds.at(-1) ?? 0;
      const lo = k === 0 ? 0 : (bounds[k - 1] ?? 0);
      const hi = bounds[k] ?? lo;
      return lo + (hi - lo) * ((rank - seen) / c);
    }
    seen += c;
  }
  return bounds.at(-1) ?? 0;
}

export type AlertState = 'inactive' | 'pending' | 'firing' | 'unknown';

export interface AlertStatus {
  name: string;
  expr: string;
  severity: Severity;
  summary: string;
  forMs: number;
  state: AlertState;
  /** When the current state began, epoch ms. */
  sinceMs: number;
  /** Each signal of the expression → its last value (null: no data). */
  values: Record<string, number | boolean | null>;
}

export interface AlertEvent {
  rule: string;
  kind: 'firing' | 'resolved';
  atMs: number;
  severity: Severity;
  summary: string;
  values: Record<string, number | boolean | null>;
}

type Tri = boolean | undefined;

export interface AlertEngineOptions {
  rules: readonly AlertRule[];
  clock: Clock;
  signals: SignalSource;
  /** The window rates, quantiles and growth are computed over. */
  windowMs?: number;
  /** Events kept for GET /v1/alerts/events. */
  maxEvents?: number;
  onEvent?: (e: AlertEvent) => void;
}

/** Evaluates rules and keeps their state; `evaluate()` is called on a timer by the collector. */
export class AlertEngine {
  readonly hops: HopWindow;
  readonly #o: AlertEngineOptions;
  readonly #status: AlertStatus[];
  readonly #events: AlertEvent[] = [];
  /** Backlog samples (ms, bytes) over the window, for backlog_growth. */
  readonly #backlog: [number, number][] = [];
  /** When a pending rule's condition started holding. */
  readonly #pendingSince = new Map<string, number>();

  constructor(o: AlertEngineOptions) {
    this.#o = o;
    this.hops = new HopWindow(o.windowMs ?? 5 * 60_000);
    const now = o.clock.now();
    this.#status = o.rules.map((r) => ({
      name: r.name,
      expr: r.exprText,
      severity: r.severity,
      summary: r.summary,
      forMs: r.forMs,
      state: 'inactive',
      sinceMs: now,
      values: {},
    }));
  }

  status(): AlertStatus[] {
    return this.#status.map((s) => ({ ...s, values: { ...s.values } }));
  }

  events(): AlertEvent[] {
    return this.#events.slice();
  }

  evaluate(): void {
    const now = this.#o.clock.now();
    const windowMs = this.hops.windowMs;
    this.hops.prune(now);
    const bytes = this.#o.signals.backlogBytes();
    if (bytes !== undefined) this.#backlog.push([now, bytes]);
    while ((this.#backlog[0]?.[0] ?? now) < now - windowMs) this.#backlog.shift();
    this.#o.rules.forEach((rule, k) => {
      const st = this.#status[k] as AlertStatus;
      const values: Record<string, number | boolean | null> = {};
      const holds = this.#eval(rule.expr, now, values);
      st.values = values;
      this.#step(rule, st, holds, now);
    });
  }

  #step(rule: AlertRule, st: AlertStatus, holds: Tri, now: number): void {
    const set = (state: AlertState, since: number) => {
      if (st.state !== state) {
        st.state = state;
        st.sinceMs = since;
      }
    };
    if (holds === undefined) {
      // Missing data neither fires nor resolves: a firing rule stays firing (its values show
      // null), anything else is unknown and a pending countdown starts over.
      this.#pendingSince.delete(rule.name);
      if (st.state !== 'firing') set('unknown', now);
      return;
    }
    if (!holds) {
      this.#pendingSince.delete(rule.name);
      if (st.state === 'firing') this.#emit(rule, 'resolved', now, st.values);
      set('inactive', now);
      return;
    }
    if (st.state === 'firing') return;
    const since = this.#pendingSince.get(rule.name) ?? now;
    this.#pendingSince.set(rule.name, since);
    if (now - since >= rule.forMs) {
      this.#pendingSince.delete(rule.name);
      set('firing', now);
      this.#emit(rule, 'firing', now, st.values);
    } else set('pending', since);
  }

  #emit(rule: AlertRule, kind: AlertEvent['kind'], atMs: number, values: AlertEvent['values']): void {
    const e: AlertEvent = {
      rule: rule.name,
      kind,
      atMs,
      severity: rule.severity,
      summary: rule.summary,
      values,
    };
    this.#events.push(e);
    if (this.#events.length > (this.#o.maxEvents ?? 1000)) this.#events.shift();
    this.#o.onEvent?.(e);
  }

  /** Kleene logic: `and` is false if either side is false, unknown if either is unknown. */
  #eval(e: Expr, now: number, values: Record<string, number | boolean | null>): Tri {
    if (e.op === 'and' || e.op === 'or') {
      const l = this.#eval(e.left, now, values);
      const r = this.#eval(e.right, now, values);
      if (e.op === 'and') return l === false || r === false ? false : l && r;
      return l === true || r === true ? true : l === undefined || r === undefined ? undefined : false;
    }
    if (e.op === 'stale') {
      const v = this.#o.signals.stale(e.arg);
      values[`stale(${e.arg})`] = v ?? null;
      return v;
    }
    if (e.op !== 'gt') throw new Error('unreachable');
    const v = this.#signal(e.signal, e.arg, now);
    values[`${e.signal}(${e.arg})`] = v ?? null;
    return v === undefined ? undefined : v > e.threshold;
  }

  #signal(signal: SignalName, arg: string, now: number): number | undefined {
    switch (signal) {
      case 'p99_latency_ms':
        return this.hops.p99LatencyMs(arg, now);
      case 'error_rate':
        return this.hops.errorRate(arg, now);
      case 'backlog_bytes':
        return arg === SELF ? this.#o.signals.backlogBytes() : undefined;
      case 'backlog_growth': {
        // Heartbeats carry no byte counts, so only the collector's own log has a backlog here.
        if (arg !== SELF) return undefined;
        const first = this.#backlog[0];
        const last = this.#backlog.at(-1);
        if (!first || !last || last[0] - first[0] <= 0) return undefined;
        return ((last[1] - first[1]) / (last[0] - first[0])) * 60_000;
      }
      case 'stale':
        return undefined;
    }
  }
}
