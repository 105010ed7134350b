/**
 * A small metrics registry for the proxy: counters and gauges with bounded label sets, exposed as
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

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

function labelKey(labels: Labels): string {
  let key = '';
  for (const k in labels) key += `${k}=${labels[k]},`;
  return key;
}

export class Stats {
  readonly #families = new Map<string, Family>();
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
    return `${lines.join('\n')}\n`;
  }
}
