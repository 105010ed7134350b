/**
 * A small metrics registry for the proxy: counters, gauges and histograms with bounded label sets, exposed as
 * JSON (`/stats`) and Prometheus text (`/metrics`). Label values come from configuration
 * (services, regions, routes), never from request data, so cardinality stays bounded.
 */
type Labels = Readonly<Record<string, string>>;

interface Series {
  labels: Labels;
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  series: Map<string, Series>;
}

/** A histogram series: per-bucket (not cumulative) counts, the last one for +Inf. */
export interface HistogramSeries {
  readonly labels: Labels;
  readonly bounds: readonly number[];
  readonly buckets: Float64Array;
  count: number;
  sum: number;
}

/** A handle on one histogram series, for the request path. */
export interface Histogram {
  observe(value: number): void;
  readonly series: HistogramSeries;
}

interface HistogramFamily {
  name: string;
  help: string;
  bounds: readonly number[];
  series: Map<string, HistogramSeries>;
}

function observe(this: { series: HistogramSeries }, value: number): void {
  const s = this.series;
  const bounds = s.bounds;
  // Few buckets: a linear scan beats a binary search and allocates nothing.
  let i = 0;
  while (i < bounds.length && value > (bounds[i] as number)) i++;
  s.buckets[i] = (s.buckets[i] as number) + 1;
  s.count++;
  s.sum += value;
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

function labelKey(labels: Labels): string {
  let key = '';
  for (const k in labels) key += `${k}=${labels[k]},`;
  return key;
}

/** Prometheus renders `le` with the shortest exact decimal; `+Inf` for the last bucket. */
const formatLe = (b: number) => (b === Infinity ? '+Inf' : String(b));

export class Stats {
  readonly #families = new Map<string, Family>();
  readonly #histograms = new Map<string, HistogramFamily>();
  readonly #constLabels: Labels;

  /** `constLabels` (e.g. region, zone) are added to every series. */
  constructor(constLabels: Labels = {}) {
    this.#constLabels = constLabels;
  }

  #family(name: string, help: string, type: Family['type']): Family {
    let f = this.#families.get(name);
    if (!f) {
      f = { name, help, type, series: new Map() };
      this.#families.set(name, f);
    }
    return f;
  }

  #series(f: Family, labels: Labels): Series {
    const key = labelKey(labels);
    let s = f.series.get(key);
    if (!s) {
      s = { labels, value: 0 };
      f.series.set(key, s);
    }
    return s;
  }

  /**
   * A handle on one counter series, for the request path: `inc` on it costs no label work. Take
   * it once (per destination and route, say) and keep it.
   */
  counter(name: string, help: string, labels: Labels = {}): { inc(by?: number): void } {
    const series = this.#series(this.#family(name, help, 'counter'), labels);
    return {
      inc(by = 1) {
        series.value += by;
      },
    };
  }

  /**
   * A handle on one histogram series (`bounds` ascending upper bounds, +Inf implied). The bounds
   * of a family are fixed by its first use. Take the handle once per label set and keep it.
   */
  histogram(name: string, help: string, bounds: readonly number[], labels: Labels = {}): Histogram {
    let f = this.#histograms.get(name);
    if (!f) {
      f = { name, help, bounds: [...bounds], series: new Map() };
      this.#histograms.set(name, f);
    }
    const key = labelKey(labels);
    let series = f.series.get(key);
    if (!series) {
      series = { labels, bounds: f.bounds, buckets: new Float64Array(f.bounds.length + 1), count: 0, sum: 0 };
      f.series.set(key, series);
    }
    return { series, observe };
  }

  /** Every histogram series, for exporting them elsewhere (OTLP). */
  histograms(): { name: string; help: string; series: HistogramSeries[] }[] {
    return [...this.#histograms.values()].map((f) => ({
      name: f.name,
      help: f.help,
      series: [...f.series.values()],
    }));
  }

  /** Adds `by` (default 1) to a counter. */
  inc(name: string, help: string, labels: Labels = {}, by = 1): void {
    this.#series(this.#family(name, help, 'counter'), labels).value += by;
  }

  set(name: string, help: string, labels: Labels, value: number): void {
    this.#series(this.#family(name, help, 'gauge'), labels).value = value;
  }

  get(name: string, labels: Labels = {}): number {
    return this.#families.get(name)?.series.get(labelKey(labels))?.value ?? 0;
  }

  toJSON(): Record<string, { labels: Labels; value: number }[]> {
    const out: Record<string, { labels: Labels; value: number }[]> = {};
    for (const f of this.#families.values()) out[f.name] = [...f.series.values()].map((s) => ({ ...s }));
    return out;
  }

  /** Prometheus text exposition format 0.0.4. */
  prometheus(): string {
    const lines: string[] = [];
    for (const f of this.#families.values()) {
      lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      for (const s of f.series.values()) {
        const all = { ...this.#constLabels, ...s.labels };
        const text = Object.entries(all)
          .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
          .join(',');
        lines.push(`${f.name}${text ? `{${text}}` : ''} ${s.value}`);
      }
    }
    for (const f of this.#histograms.values()) {
      lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} histogram`);
      for (const s of f.series.values()) {
        const text = Object.entries({ ...this.#constLabels, ...s.labels })
          .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
          .join(',');
        const sep = text ? ',' : '';
        let cumulative = 0;
        for (let i = 0; i <= f.bounds.length; i++) {
          cumulative += s.buckets[i] as number;
          lines.push(
            `${f.name}_bucket{${text}${sep}le="${formatLe(f.bounds[i] ?? Infinity)}"} ${cumulative}`,
          );
        }
        lines.push(
          `${f.name}_sum${text ? `{${text}}` : ''} ${s.sum}`,
          `${f.name}_count${text ? `{${text}}` : ''} ${s.count}`,
        );
      }
    }
    return `${lines.join('\n')}\n`;
  }
}
