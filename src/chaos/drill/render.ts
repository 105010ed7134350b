import { styler, type Styler } from '../../core/style.js';
import type { DrillReport, ExpectationResult, PhaseStats, TimelineEvent, Verdict } from './report.js';

/**
 * A drill report for people: `renderText` for the terminal, `renderHtml` for a file to keep or
 * attach to an incident (one self-contained page, no scripts, no external assets). `--json` is
 * `JSON.stringify(report)`: it needs no renderer.
 */

/** The colours the text report uses; the CLI passes its own styler, or `{ color }` builds one. */
export type TextStyler = Styler;

export interface TextOptions {
  /** ANSI colours; ignored when `styler` is given. */
  color: boolean;
  styler?: TextStyler;
}

// ---------------------------------------------------------------------------------------------
// Numbers

/** `850ms`, `2.4s`, `1m05s`; `–` for null. */
/** The signals table of both renderings: one row per source, then the totals. */
function signalTable(sig: DrillReport['signals']): {
  header: string[];
  rows: string[][];
  numeric: boolean[];
} {
  const sum = (pick: (r: (typeof sig.rows)[number]) => number) => sig.rows.reduce((n, r) => n + pick(r), 0);
  return {
    header: ['source', 'region', 'emitted', 'received', 'lost', 'duplicated', 'max delay'],
    rows: [
      ...sig.rows.map((r) => [
        r.source,
        r.region,
        String(r.emitted),
        String(r.received),
        String(r.lost),
        String(r.duplicated),
        formatMs(r.maxDelayMs),
      ]),
      [
        'total',
        '',
        String(sum((r) => r.emitted)),
        String(sum((r) => r.received)),
        String(sig.lost),
        String(sig.duplicated),
        formatMs(sig.maxDelayMs),
      ],
    ],
    numeric: [false, false, true, true, true, true, true],
  };
}

export function formatMs(ms: number | null): string {
  if (ms === null) return '–';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1).replace(/\.?0+$/, '')}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** `t+12.5s` from the drill's start. */
function formatAt(ms: number): string {
  return `t+${(ms / 1000).toFixed(1)}s`;
}

function formatRatio(v: number): string {
  const pct = v * 100;
  const digits = pct !== 0 && Math.abs(pct) < 1 ? 2 : 1;
  return `${Number(v.toFixed(6))} (${pct.toFixed(digits)}%)`;
}

/** A value in its metric's unit. */
export function formatValue(value: number | null, unit: ExpectationResult['unit']): string {
  if (value === null) return '–';
  if (unit === 'ms') return formatMs(value);
  if (unit === 'ratio') return formatRatio(value);
  return String(value);
}

/** `≤ 0.005`, `≥ 0.99`, `0.9 – 1`: the limits of a check. */
export function formatLimit(r: Pick<ExpectationResult, 'min' | 'max' | 'unit'>): string {
  const f = (v: number) => (r.unit === 'ratio' ? String(v) : formatValue(v, r.unit));
  if (r.min !== undefined && r.max !== undefined) return `${f(r.min)} – ${f(r.max)}`;
  if (r.max !== undefined) return `≤ ${f(r.max)}`;
  if (r.min !== undefined) return `≥ ${f(r.min)}`;
  return 'no limit';
}

/** What to say about a failing check: which limit the actual value broke. */
function failureText(r: ExpectationResult): string {
  if (r.actual === null) return r.note ?? 'not measured';
  const f = (v: number) => formatValue(v, r.unit);
  if (r.max !== undefined && r.actual > r.max) return `${f(r.actual)} > max ${f(r.max)}`;
  if (r.min !== undefined && r.actual < r.min) return `${f(r.actual)} < min ${f(r.min)}`;
  return `${f(r.actual)}${r.note ? ` (${r.note})` : ''}`;
}

const VERDICT_TEXT: Record<Verdict, string> = {
  pass: 'PASS',
  fail: 'FAIL',
  'not-steady': 'NOT STEADY',
  aborted: 'ABORTED',
  error: 'ERROR',
};

const ratioOf = (part: number, whole: number) =>
  whole === 0 ? '–' : `${((part / whole) * 100).toFixed(1)}%`;

// ---------------------------------------------------------------------------------------------
// Text

/** Left-aligned columns (numbers right-aligned); widths from the plain text, styling after. */
function table(
  header: string[],
  rows: string[][],
  s: TextStyler,
  opts: { numeric?: boolean[]; lastIsTotal?: boolean } = {},
): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (opts.numeric?.[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [
    `  ${s.dim(line(header))}`,
    ...rows.map((r, i) => `  ${opts.lastIsTotal && i === rows.length - 1 ? s.bold(line(r)) : line(r)}`),
  ];
}

function checkLines(results: ExpectationResult[], s: TextStyler): string[] {
  const labels = results.map((r) => `${r.metric}${r.phase !== undefined ? ` [${r.phase}]` : ''}`);
  const width = Math.max(0, ...labels.map((l) => l.length));
  return results.map((r, i) => {
    const label = (labels[i] ?? '').padEnd(width);
    if (r.pass) {
      const note = r.note ? s.dim(`  (${r.note})`) : '';
      return `  ${s.green('✓')} ${label}  ${formatValue(r.actual, r.unit)}  ${s.dim(formatLimit(r))}${note}`;
    }
    const detail =
      r.actual === null
        ? `${r.note ?? 'not measured'}  ${s.dim(`limit ${formatLimit(r)}`)}`
        : `${failureText(r)}${r.note && r.actual !== null ? s.dim(`  (${r.note})`) : ''}`;
    return `  ${s.red('✗')} ${s.bold(label)}  ${s.red(detail)}`;
  });
}

function describeEvent(e: TimelineEvent): string {
  return [e.step, e.detail].filter((x) => x !== undefined && x !== '').join(': ');
}

/** The report as a person reads it in a terminal. */
export function renderText(report: DrillReport, options: TextOptions): string {
  const s = options.styler ?? styler(options.color);
  const out: string[] = [];
  const verdictColor = report.verdict === 'pass' ? s.green : report.verdict === 'fail' ? s.red : s.yellow;
  out.push(`${s.bold(`Drill ${report.drill.name}`)}  ${verdictColor(s.bold(VERDICT_TEXT[report.verdict]))}`);
  if (report.drill.description) out.push(`  ${report.drill.description}`);
  out.push(
    s.dim(
      `  ${report.drill.file} · seed ${report.drill.seed} · started ${report.startedAt} · ran ${formatMs(report.durationMs)} · ${report.topology.source} ${report.topology.regions.join(', ')}`,
    ),
  );
  if (report.verdict !== 'pass' && report.reason) out.push(`  ${verdictColor('Reason:')} ${report.reason}`);

  if (report.timeline.length > 0) {
    out.push('', s.bold('Timeline'));
    const width = Math.max(...report.timeline.map((e) => e.kind.length));
    for (const e of report.timeline) {
      const kind = e.kind.padEnd(width);
      const styled =
        e.kind === 'probe-failed' || e.kind === 'abort'
          ? s.red(kind)
          : e.kind === 'fault-applied'
            ? s.yellow(kind)
            : e.kind === 'heal-verified' || e.kind === 'fault-removed'
              ? s.green(kind)
              : s.cyan(kind);
      out.push(`  ${s.dim(formatAt(e.atMs).padStart(8))}  ${styled}  ${describeEvent(e)}`);
    }
  }

  if (report.phases.length > 0) {
    out.push('', s.bold('Phases'));
    const rows = report.phases.map((p: PhaseStats) => [
      p.phase,
      `${formatAt(p.startMs)}–${(p.endMs / 1000).toFixed(1)}s`,
      String(p.requests),
      String(p.ok),
      String(p.failed),
      String(p.unknown),
      ratioOf(p.requests - p.ok, p.requests),
      formatMs(p.latencyMs.p50),
      formatMs(p.latencyMs.p99),
      formatMs(p.latencyMs.max),
    ]);
    out.push(
      ...table(
        ['phase', 'window', 'requests', 'ok', 'failed', 'unknown', 'fail %', 'p50', 'p99', 'max'],
        rows,
        s,
        { numeric: [false, false, true, true, true, true, true, true, true, true] },
      ),
    );
    for (const p of report.phases) {
      const deps = Object.entries(p.servedBy ?? {});
      if (deps.length === 0) continue;
      const parts = deps.map(([dep, regions]) => {
        const total = Object.values(regions).reduce((n, c) => n + c, 0);
        const split = Object.entries(regions)
          .sort((a, b) => b[1] - a[1])
          .map(([region, c]) => `${region} ${Math.round((100 * c) / total)}%`)
          .join(', ');
        return `${dep} ← ${split}`;
      });
      out.push(s.dim(`  ${p.phase.padEnd(9)} served by: ${parts.join('; ')}`));
    }
  }

  const f = report.failover;
  out.push(
    '',
    s.bold('Failover'),
    `  time to detect     ${formatMs(f.timeToDetectMs)}`,
    `  time to fail over  ${formatMs(f.timeToFailoverMs)}`,
    `  time to fail back  ${formatMs(f.timeToFailbackMs)}`,
    `  route flaps        ${f.routeFlaps}`,
  );
  const byRegion = Object.entries(f.byRegion ?? {});
  if (byRegion.length > 0)
    out.push(
      ...table(
        ['region', 'detect', 'fail over', 'fail back', 'flaps'],
        byRegion.map(([region, r]) => [
          region,
          formatMs(r.detectMs),
          formatMs(r.failoverMs),
          formatMs(r.failbackMs),
          String(r.flaps),
        ]),
        s,
        { numeric: [false, true, true, true, true] },
      ),
    );

  out.push(
    '',
    s.bold('Writes'),
    `  attempted ${report.writes.attempted}, duplicate side effects ${
      report.writes.duplicateSideEffects === 0 ? '0' : s.red(String(report.writes.duplicateSideEffects))
    }`,
    '',
    s.bold('Config'),
    `  max staleness ${formatMs(report.config.stalenessMaxMs)}`,
  );

  const sig = report.signals;
  out.push('', s.bold('Signals'));
  if (!sig.complete)
    out.push(`  ${s.yellow('incomplete: a collector could not be queried; figures are a lower bound')}`);
  const signals = signalTable(sig);
  out.push(...table(signals.header, signals.rows, s, { numeric: signals.numeric, lastIsTotal: true }));

  if (report.steadyState.length > 0)
    out.push('', s.bold('Steady state'), ...checkLines(report.steadyState, s));
  if (report.expectations.length > 0)
    out.push('', s.bold('Expectations'), ...checkLines(report.expectations, s));
  const failed = report.expectations.filter((e) => !e.pass).length;
  out.push(
    '',
    `${verdictColor(s.bold(VERDICT_TEXT[report.verdict]))}  ${report.expectations.length - failed}/${report.expectations.length} expectations met${
      report.verdict !== 'pass' && report.reason ? ` · ${report.reason}` : ''
    }`,
  );
  return out.join('\n') + '\n';
}

/** One live status line while a drill runs. */
export interface Progress {
  elapsedMs: number;
  phase: PhaseStats['phase'] | 'rollback';
  ok: number;
  failed: number;
  unknown: number;
  p99Ms: number | null;
  /** Steps running now. */
  steps?: string[];
}

/** `t+12.0s  phase fault  ok 480 failed 0 unknown 0  p99 42ms  step cut-eu-west` */
export function renderProgressLine(p: Progress, options: TextOptions = { color: false }): string {
  const s = options.styler ?? styler(options.color);
  const failed = p.failed > 0 ? s.red(`failed ${p.failed}`) : `failed ${p.failed}`;
  const unknown = p.unknown > 0 ? s.yellow(`unknown ${p.unknown}`) : `unknown ${p.unknown}`;
  const steps = p.steps && p.steps.length > 0 ? `  step ${p.steps.join(', ')}` : '';
  return `${s.dim(formatAt(p.elapsedMs))}  phase ${s.cyan(p.phase)}  ok ${p.ok} ${failed} ${unknown}  p99 ${formatMs(p.p99Ms)}${steps}`;
}

// ---------------------------------------------------------------------------------------------
// HTML

/** Escapes text for HTML element content and double- or single-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const h = escapeHtml;

/** Windows during which a fault was in place, from the timeline (applied → removed, per step). */
export function faultWindows(
  report: Pick<DrillReport, 'timeline' | 'durationMs'>,
): { step: string; startMs: number; endMs: number }[] {
  const open = new Map<string, number>();
  const windows: { step: string; startMs: number; endMs: number }[] = [];
  const events = [...report.timeline].sort((a, b) => a.atMs - b.atMs);
  const hasFaultEvents = events.some((e) => e.kind === 'fault-applied');
  const [startKind, endKind] = hasFaultEvents
    ? ['fault-applied', 'fault-removed']
    : ['step-start', 'step-end'];
  for (const e of events) {
    const step = e.step ?? '';
    if (e.kind === startKind && !open.has(step)) open.set(step, e.atMs);
    else if (e.kind === endKind && open.has(step)) {
      windows.push({ step, startMs: open.get(step) as number, endMs: e.atMs });
      open.delete(step);
    } else if (e.kind === 'heal-verified' || (e.kind === 'rollback' && /heal/.test(e.detail))) {
      // A heal removes whatever is still in place.
      for (const [s, at] of open) windows.push({ step: s, startMs: at, endMs: e.atMs });
      open.clear();
    }
  }
  for (const [step, at] of open) windows.push({ step, startMs: at, endMs: report.durationMs });
  return windows.sort((a, b) => a.startMs - b.startMs);
}

function chartSvg(report: DrillReport): string {
  const series = report.series ?? [];
  const W = 900;
  const H = 260;
  const m = { l: 48, r: 48, t: 12, b: 28 };
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;
  const endMs = Math.max(report.durationMs, ...series.map((b) => b.tMs + 1000), 1000);
  const x = (ms: number) => m.l + (ms / endMs) * iw;
  const maxCount = Math.max(1, ...series.map((b) => b.ok + b.failed + b.unknown));
  const y = (n: number) => m.t + ih - (n / maxCount) * ih;
  const bw = Math.max(1, (1000 / endMs) * iw - 1);
  const parts: string[] = [];
  for (const w of faultWindows(report)) {
    parts.push(
      `<rect class="fault" x="${x(w.startMs).toFixed(1)}" y="${m.t}" width="${Math.max(1, x(w.endMs) - x(w.startMs)).toFixed(1)}" height="${ih}"><title>${h(w.step)}: fault ${h(formatMs(w.startMs))}–${h(formatMs(w.endMs))}</title></rect>`,
      `<text class="label" x="${(x(w.startMs) + 3).toFixed(1)}" y="${m.t + 11}">${h(w.step)}</text>`,
    );
  }
  for (const b of series) {
    const bx = x(b.tMs).toFixed(1);
    let base = 0;
    for (const [cls, n] of [
      ['ok', b.ok],
      ['failed', b.failed],
      ['unknown', b.unknown],
    ] as const) {
      if (n > 0)
        parts.push(
          `<rect class="${cls}" x="${bx}" y="${y(base + n).toFixed(1)}" width="${bw.toFixed(1)}" height="${(y(base) - y(base + n)).toFixed(1)}"><title>${h(formatAt(b.tMs))}: ${n} ${cls}</title></rect>`,
        );
      base += n;
    }
  }
  const p99s = series.filter((b) => b.p99Ms !== null);
  const maxP99 = Math.max(1, ...p99s.map((b) => b.p99Ms as number));
  if (p99s.length > 1) {
    const py = (v: number) => m.t + ih - (v / maxP99) * ih;
    const points = p99s.map((b) => `${(x(b.tMs) + bw / 2).toFixed(1)},${py(b.p99Ms as number).toFixed(1)}`);
    parts.push(`<polyline class="p99" points="${points.join(' ')}"/>`);
    parts.push(
      `<text class="axis" x="${W - m.r + 4}" y="${m.t + 10}">${h(formatMs(maxP99))}</text>`,
      `<text class="axis" x="${W - m.r + 4}" y="${m.t + ih}">p99</text>`,
    );
  }
  // Axes: count on the left, seconds along the bottom.
  parts.push(
    `<line class="grid" x1="${m.l}" y1="${m.t + ih}" x2="${W - m.r}" y2="${m.t + ih}"/>`,
    `<text class="axis" x="${m.l - 6}" y="${m.t + 10}" text-anchor="end">${maxCount}/s</text>`,
    `<text class="axis" x="${m.l - 6}" y="${m.t + ih}" text-anchor="end">0</text>`,
  );
  const stepS = Math.max(1, Math.ceil(endMs / 1000 / 12));
  for (let t = 0; t * 1000 <= endMs; t += stepS)
    parts.push(
      `<text class="axis" x="${x(t * 1000).toFixed(1)}" y="${H - 8}" text-anchor="middle">${t}s</text>`,
    );
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="Requests per second: ok, failed and unknown outcome, with fault windows shaded">${parts.join('')}</svg>`;
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:#1d2329;margin:2rem auto;max-width:960px;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:1.75rem 0 .5rem;border-bottom:1px solid #dde2e6;padding-bottom:.2rem}
.verdict{display:inline-block;padding:.1rem .6rem;border-radius:4px;font-weight:700;color:#fff;vertical-align:middle;margin-left:.5rem}
.v-pass{background:#1a7f37}.v-fail{background:#cf222e}.v-not-steady,.v-aborted,.v-error{background:#9a6700}
.meta{color:#57606a}.reason{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .75rem;border-radius:4px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25rem .6rem;border-bottom:1px solid #eaeef2}
th{color:#57606a;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:700;border-top:2px solid #d0d7de}.pass{color:#1a7f37}.fail{color:#cf222e;font-weight:600}
.warn{color:#9a6700}code{font:12px ui-monospace,monospace}
svg .ok{fill:#2da44e}svg .failed{fill:#cf222e}svg .unknown{fill:#d4a72c}svg .fault{fill:#cf222e;opacity:.09}
svg .p99{fill:none;stroke:#0969da;stroke-width:1.5}svg .grid{stroke:#8c959f}svg .axis,svg .label{font:11px system-ui,sans-serif;fill:#57606a}
.legend span{display:inline-block;margin-right:1rem}.sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:-1px}
`;

function htmlTable(
  header: string[],
  rows: string[][],
  numeric: boolean[],
  rowClass: (i: number) => string = () => '',
): string {
  const cell = (tag: string, c: string, i: number) =>
    `<${tag}${numeric[i] ? ' class="n"' : ''}>${c}</${tag}>`;
  return `<table><thead><tr>${header.map((c, i) => cell('th', h(c), i)).join('')}</tr></thead><tbody>${rows
    .map(
      (r, i) =>
        `<tr${rowClass(i) ? ` class="${rowClass(i)}"` : ''}>${r.map((c, j) => cell('td', c, j)).join('')}</tr>`,
    )
    .join('')}</tbody></table>`;
}

function htmlChecks(results: ExpectationResult[]): string {
  return htmlTable(
    ['', 'metric', 'phase', 'limit', 'actual', 'note'],
    results.map((r) => [
      r.pass ? '<span class="pass">✓</span>' : '<span class="fail">✗</span>',
      `<code>${h(r.metric)}</code>`,
      h(r.phase ?? ''),
      h(formatLimit(r)),
      `<span class="${r.pass ? 'pass' : 'fail'}">${h(r.pass ? formatValue(r.actual, r.unit) : failureText(r))}</span>`,
      // A value not measured shows its note as the value already.
      h(r.actual !== null ? (r.note ?? '') : ''),
    ]),
    [false, false, false, true, true, false],
  );
}

/** The report as one self-contained HTML page: inline CSS and SVG, every report string escaped. */
export function renderHtml(report: DrillReport): string {
  const d = report.drill;
  const sig = report.signals;
  const f = report.failover;
  const sections: string[] = [];
  sections.push(
    `<h1>Drill ${h(d.name)}<span class="verdict v-${h(report.verdict)}">${h(VERDICT_TEXT[report.verdict])}</span></h1>`,
    d.description ? `<p>${h(d.description)}</p>` : '',
    `<p class="meta"><code>${h(d.file)}</code> · seed ${d.seed} · started ${h(report.startedAt)} · ran ${h(formatMs(report.durationMs))} · ${h(report.topology.source)}: ${h(report.topology.regions.join(', '))}</p>`,
    report.verdict !== 'pass' && report.reason
      ? `<p class="reason"><strong>Reason:</strong> ${h(report.reason)}</p>`
      : '',
  );
  if (report.series && report.series.length > 0)
    sections.push(
      '<h2>Requests per second</h2>',
      chartSvg(report),
      '<p class="legend"><span><i class="sw" style="background:#2da44e"></i>ok</span><span><i class="sw" style="background:#cf222e"></i>failed</span><span><i class="sw" style="background:#d4a72c"></i>unknown outcome</span><span><i class="sw" style="background:#f6d9db"></i>fault in place</span><span><i class="sw" style="background:#0969da"></i>p99 latency (right scale)</span></p>',
    );
  if (report.expectations.length > 0) sections.push('<h2>Expectations</h2>', htmlChecks(report.expectations));
  if (report.steadyState.length > 0)
    sections.push('<h2>Steady state (baseline)</h2>', htmlChecks(report.steadyState));
  if (report.timeline.length > 0)
    sections.push(
      '<h2>Timeline</h2>',
      htmlTable(
        ['at', 'event', 'step', 'detail'],
        report.timeline.map((e) => [h(formatAt(e.atMs)), h(e.kind), h(e.step ?? ''), h(e.detail)]),
        [true, false, false, false],
      ),
    );
  if (report.phases.length > 0)
    sections.push(
      '<h2>Phases</h2>',
      htmlTable(
        [
          'phase',
          'from',
          'to',
          'requests',
          'ok',
          'failed',
          'unknown',
          'failed idempotent',
          'p50',
          'p99',
          'max',
        ],
        report.phases.map((p) =>
          [
            p.phase,
            formatAt(p.startMs),
            formatAt(p.endMs),
            String(p.requests),
            String(p.ok),
            String(p.failed),
            String(p.unknown),
            String(p.failedIdempotent),
            formatMs(p.latencyMs.p50),
            formatMs(p.latencyMs.p99),
            formatMs(p.latencyMs.max),
          ].map(h),
        ),
        [false, true, true, true, true, true, true, true, true, true, true],
      ),
    );
  const byRegion = Object.entries(f.byRegion ?? {});
  sections.push(
    '<h2>Failover</h2>',
    htmlTable(
      ['time to detect', 'time to fail over', 'time to fail back', 'route flaps'],
      [
        [
          formatMs(f.timeToDetectMs),
          formatMs(f.timeToFailoverMs),
          formatMs(f.timeToFailbackMs),
          String(f.routeFlaps),
        ].map(h),
      ],
      [true, true, true, true],
    ),
    byRegion.length > 0
      ? htmlTable(
          ['region', 'detect', 'fail over', 'fail back', 'flaps'],
          byRegion.map(([region, r]) =>
            [
              region,
              formatMs(r.detectMs),
              formatMs(r.failoverMs),
              formatMs(r.failbackMs),
              String(r.flaps),
            ].map(h),
          ),
          [false, true, true, true, true],
        )
      : '',
    '<h2>Writes and config</h2>',
    `<p>Writes attempted: ${report.writes.attempted} · duplicate side effects: <span class="${report.writes.duplicateSideEffects > 0 ? 'fail' : ''}">${report.writes.duplicateSideEffects}</span> · max config staleness: ${h(formatMs(report.config.stalenessMaxMs))}</p>`,
  );
  const signals = signalTable(sig);
  sections.push(
    '<h2>Signals</h2>',
    sig.complete
      ? ''
      : '<p class="warn">Incomplete: a collector could not be queried; the figures are a lower bound.</p>',
    htmlTable(
      signals.header,
      signals.rows.map((row) => row.map(h)),
      signals.numeric,
      (i) => (i === sig.rows.length ? 'total' : ''),
    ),
  );
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Drill ${h(d.name)}: ${h(VERDICT_TEXT[report.verdict])}</title><style>${CSS}</style></head>
<body>
${sections.filter((x) => x !== '').join('\n')}
</body></html>
`;
}
