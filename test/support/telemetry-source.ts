/**
 * A stand-in for an Isthmus telemetry source in collector tests: builds OTLP/HTTP JSON requests
 * whose spans, log records and metric batches carry `isthmus.seq` 1, 2, 3, … (one seq per record,
 * as if each came from its own write-ahead-log record), with fixed original timestamps.
 */

type Obj = Record<string, unknown>;

/** 2023-11-14T22:13:20Z in ns: far from "now", so a stored time is visibly the original one. */
export const BASE_NS = 1_700_000_000_000_000_000n;

export const timeNsOf = (seq: number): string => (BASE_NS + BigInt(seq) * 1_000_000n).toString();
export const traceIdOf = (seq: number): string => `${'a'.repeat(16)}${seq.toString(16).padStart(16, '0')}`;
export const spanIdOf = (seq: number): string => `${'b'.repeat(4)}${seq.toString(16).padStart(12, '0')}`;

const str = (key: string, value: string) => ({ key, value: { stringValue: value } });
const int = (key: string, value: number) => ({ key, value: { intValue: String(value) } });

export class TestSource {
  seq = 0;
  constructor(
    readonly source: string,
    readonly region: string,
    readonly zone = `${region}-a`,
  ) {}

  get resource(): Obj {
    return {
      attributes: [
        str('service.name', 'frontend'),
        str('isthmus.source', this.source),
        str('isthmus.region', this.region),
        str('isthmus.zone', this.zone),
      ],
    };
  }

  /** `n` spans, one seq each. */
  spans(n: number): { body: Obj; seqs: number[] } {
    const seqs: number[] = [];
    const spans = Array.from({ length: n }, () => {
      const seq = ++this.seq;
      seqs.push(seq);
      return {
        traceId: traceIdOf(seq),
        spanId: spanIdOf(seq),
        name: 'GET /items',
        kind: 2,
        startTimeUnixNano: timeNsOf(seq),
        endTimeUnixNano: (BigInt(timeNsOf(seq)) + 5_000_000n).toString(),
        attributes: [int('isthmus.seq', seq), int('http.response.status_code', 200)],
      };
    });
    return {
      body: {
        resourceSpans: [{ resource: this.resource, scopeSpans: [{ scope: { name: 'isthmus' }, spans }] }],
      },
      seqs,
    };
  }

  /** `n` access-log records, one seq each, with fields allowed out (status) and not (path, clientAddress). */
  logs(n: number): { body: Obj; seqs: number[] } {
    const seqs: number[] = [];
    const logRecords = Array.from({ length: n }, () => {
      const seq = ++this.seq;
      seqs.push(seq);
      return {
        timeUnixNano: timeNsOf(seq),
        severityNumber: 9,
        body: { stringValue: `GET /users/alice/orders?card=4111 200 seq=${seq}` },
        attributes: [
          int('isthmus.seq', seq),
          str('isthmus.record_id', `${this.source}#${seq}`),
          str('route', 'orders'),
          int('status', 200),
          str('path', '/users/alice/orders?card=4111'),
          str('clientAddress', '203.0.113.7'),
        ],
      };
    });
    return {
      body: {
        resourceLogs: [{ resource: this.resource, scopeLogs: [{ scope: { name: 'isthmus' }, logRecords }] }],
      },
      seqs,
    };
  }

  /** `n` metric batches (one scope = one seq each), each a gauge and a histogram point. */
  metrics(n: number): { body: Obj; seqs: number[] } {
    const seqs: number[] = [];
    const scopeMetrics = Array.from({ length: n }, () => {
      const seq = ++this.seq;
      seqs.push(seq);
      const timeUnixNano = timeNsOf(seq);
      return {
        scope: { name: 'isthmus', attributes: [int('isthmus.seq', seq)] },
        metrics: [
          {
            name: 'isthmus.requests.inflight',
            gauge: {
              dataPoints: [{ timeUnixNano, asInt: String(seq % 7), attributes: [str('route', 'orders')] }],
            },
          },
          {
            name: 'isthmus.request.duration',
            unit: 'ms',
            histogram: {
              aggregationTemporality: 1,
              dataPoints: [
                {
                  timeUnixNano,
                  count: '3',
                  sum: 12.5,
                  explicitBounds: [5, 10],
                  bucketCounts: ['1', '1', '1'],
                  attributes: [str('route', 'orders')],
                },
              ],
            },
          },
        ],
      };
    });
    return { body: { resourceMetrics: [{ resource: this.resource, scopeMetrics }] }, seqs };
  }

  heartbeat(): Obj {
    return {
      source: this.source,
      region: this.region,
      zone: this.zone,
      emittedSeq: this.seq,
      sentAtMs: Date.now(),
    };
  }
}

export interface Answer {
  status: number;
  body: Obj;
}

export async function post(
  base: string,
  path: string,
  body: unknown,
  contentType = 'application/json',
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(new URL(path, base), {
    method: 'POST',
    headers: { 'content-type': contentType, ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: Obj = {};
  try {
    parsed = JSON.parse(text) as Obj;
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed };
}

export async function get<T = Obj>(base: string, path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(new URL(path, base));
  return { status: res.status, body: (await res.json()) as T };
}

export interface Continuity {
  sources: {
    source: string;
    emitted: number;
    received: number;
    duplicates: number;
    gaps: number;
    stale: boolean;
    lagMs: number | null;
    lastHeardMs: number | null;
    lostAtSource: { full: number; corrupt: number; torn: number; rejected: number; total: number };
  }[];
}

export interface Summary {
  stored: { spans: number; points: number; logs: number };
  forwarding: { backlogRecords: number } | null;
}
