import http, { type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { accessLogsToOtlp } from '../../src/telemetry/access-log.js';
import {
  ACCESS_LOG_BINARY_TYPE,
  ACCESS_LOG_FORMAT_V4,
  binaryAccessLogsToOtlp,
  decodeAccessLogBody,
} from '../../src/telemetry/access-log-binary.js';

type Json = Record<string, unknown>;

export interface OtlpAttribute {
  key: string;
  value: { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean };
}

/** One span, log record or metrics scope as received, with its source and seq. */
export interface Received {
  signal: 'traces' | 'logs' | 'metrics';
  source: string;
  seq: number;
  item: Json & { attributes?: OtlpAttribute[] };
  resource: Record<string, unknown>;
}

export function attr(attributes: readonly OtlpAttribute[] | undefined, key: string): unknown {
  const a = attributes?.find((x) => x.key === key);
  if (!a) return undefined;
  const v = a.value;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return v.boolValue;
}

function flatAttrs(list: readonly OtlpAttribute[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of list ?? []) out[a.key] = attr(list, a.key);
  return out;
}

/**
 * A stand-in collector: answers the OTLP/HTTP JSON endpoints of docs/telemetry-wire.md, records
 * what it got, deduplicates as the real one does (a log record by its `isthmus.record_id` when it
 * has one, since the access-log records of a batch share one seq; anything else on (source, seq)),
 * and can be told to fail (`down`: 503 to everything) to script an outage.
 */
export class FakeCollector {
  /** Answer every request 503 while true. */
  down = false;
  /**
   * Take compact access-log records (`POST /v1/access-logs`) as the real collector does; while
   * false, answer that endpoint 404 as a collector without it would; with `'format-3'`, refuse
   * binary bodies (format 4) with a 415, as a collector of JSON formats only would; with
   * `'format-2'`, that and refuse format 3 with a 400 naming `format`, as a collector that knows
   * formats 1 and 2 only would.
   */
  accessLogs: boolean | 'format-3' | 'format-2' = true;
  /**
   * Refuse (400, naming nothing) every body this says yes to, as a collector refuses a malformed
   * one. A binary access-log body is given as the JSON of what it decodes to (see {@link requests}).
   */
  refuse: ((path: string, body: string) => boolean) | undefined;
  /**
   * Every request: a binary access-log body's `body` is the JSON of what it decodes to,
   * `{format: "isthmus.access-log/4", resource, batches}` (format-3 batches), so that tests read
   * every format alike.
   */
  readonly requests: { path: string; status: number; body: string; binary: boolean }[] = [];
  readonly items: Received[] = [];
  readonly heartbeats: Json[] = [];
  duplicates = 0;
  readonly #seen = new Set<string>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor() {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const path = req.url ?? '/';
        const binary = req.headers['content-type'] === ACCESS_LOG_BINARY_TYPE;
        let body = raw.toString('utf8');
        if (binary)
          try {
            body = JSON.stringify({ format: ACCESS_LOG_FORMAT_V4, ...decodeAccessLogBody(raw) });
          } catch {
            body = '';
          }
        let status = 200;
        let answer = '{}';
        if (this.down) {
          status = 503;
          answer = JSON.stringify({ error: 'unavailable', message: 'fake outage' });
        } else if (path === '/v1/access-logs' && !this.accessLogs) {
          status = 404;
          answer = JSON.stringify({ error: 'ISTHMUS_E_NOT_FOUND', message: `no POST ${path}` });
        } else if (path === '/v1/access-logs' && binary && this.accessLogs !== true) {
          status = 415;
          answer = JSON.stringify({ error: 'ISTHMUS_E_USAGE', message: 'send the body as application/json' });
        } else if (
          path === '/v1/access-logs' &&
          this.accessLogs === 'format-2' &&
          !body.includes('"isthmus.access-log/2"')
        ) {
          status = 400;
          answer = JSON.stringify({
            error: 'ISTHMUS_E_INVALID_VALUE',
            message: 'format: must be "isthmus.access-log/2" (or "isthmus.access-log/1")',
            path: 'format',
          });
        } else if (this.refuse?.(path, body)) {
          status = 400;
          answer = JSON.stringify({ error: 'ISTHMUS_E_INVALID_VALUE', message: 'refused' });
        } else {
          try {
            if (binary) this.#acceptAccessLogs(binaryAccessLogsToOtlp(raw));
            else this.#accept(path, JSON.parse(body) as Json);
          } catch {
            status = 400;
            answer = JSON.stringify({ error: 'ISTHMUS_E_INVALID_VALUE', message: 'not taken' });
          }
        }
        this.requests.push({ path, status, body, binary });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(answer);
      });
    });
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
  }

  static async start(): Promise<FakeCollector> {
    const c = new FakeCollector();
    await new Promise<void>((resolve) => c.#server.listen(0, '127.0.0.1', resolve));
    return c;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  #keep(signal: Received['signal'], resource: Json, item: Json, seqFrom: OtlpAttribute[] | undefined): void {
    const res = flatAttrs((resource.attributes as OtlpAttribute[] | undefined) ?? []);
    const source = String(res['isthmus.source']);
    const seq = attr(seqFrom, 'isthmus.seq');
    if (typeof seq !== 'number') throw new Error('missing isthmus.seq');
    const recordId =
      signal === 'logs' ? attr(item.attributes as OtlpAttribute[], 'isthmus.record_id') : undefined;
    // As the collector: log records by id, spans by ids (the spans of one access-log batch share
    // its seq), metrics batches by seq.
    const key =
      typeof recordId === 'string'
        ? `${source}#record:${recordId}`
        : signal === 'traces'
          ? `${source}#span:${String(item.traceId)}/${String(item.spanId)}`
          : `${source}#${seq}`;
    if (this.#seen.has(key)) {
      this.duplicates++;
      return;
    }
    this.#seen.add(key);
    this.items.push({ signal, source, seq, item: item, resource: res });
  }

  #acceptAccessLogs(otlp: { logs: Json; traces: Json | undefined }): void {
    this.#accept('/v1/logs', otlp.logs);
    if (otlp.traces) this.#accept('/v1/traces', otlp.traces);
  }

  #accept(path: string, body: Json): void {
    const list = (v: unknown) => (Array.isArray(v) ? (v as Json[]) : []);
    const traces = (b: Json) => {
      for (const rs of list(b.resourceSpans))
        for (const ss of list(rs.scopeSpans))
          for (const s of list(ss.spans))
            this.#keep('traces', rs.resource as Json, s, s.attributes as OtlpAttribute[]);
    };
    const logs = (b: Json) => {
      for (const rl of list(b.resourceLogs))
        for (const sl of list(rl.scopeLogs))
          for (const l of list(sl.logRecords))
            this.#keep('logs', rl.resource as Json, l, l.attributes as OtlpAttribute[]);
    };
    if (path === '/v1/heartbeat') this.heartbeats.push(body);
    else if (path === '/v1/traces') traces(body);
    else if (path === '/v1/logs') logs(body);
    else if (path === '/v1/access-logs') this.#acceptAccessLogs(accessLogsToOtlp(body));
    else if (path === '/v1/metrics')
      for (const rm of list(body.resourceMetrics))
        for (const sm of list(rm.scopeMetrics))
          this.#keep(
            'metrics',
            rm.resource as Json,
            sm,
            (sm.scope as Json | undefined)?.attributes as OtlpAttribute[],
          );
    else throw new Error(`unknown path ${path}`);
  }

  /** The distinct seqs received from `source`, ascending (records of one batch share theirs). */
  seqs(source?: string): number[] {
    const seqs = new Set(
      this.items.filter((i) => source === undefined || i.source === source).map((i) => i.seq),
    );
    return [...seqs].sort((a, b) => a - b);
  }

  /**
   * The compact access-log bodies the collector stored (answered 200), parsed; a binary body as
   * the format-3 batches it decodes to, with `format` "isthmus.access-log/4".
   */
  accessLogBodies(): { format: string; resource: Json; batches?: unknown[][]; records?: unknown[][] }[] {
    return this.requests
      .filter((r) => r.path === '/v1/access-logs' && r.status === 200)
      .map((r) => JSON.parse(r.body) as { format: string; resource: Json; batches?: unknown[][] });
  }

  spans(): (Received & { attrs: Record<string, unknown> })[] {
    return this.of('traces');
  }

  logs(): (Received & { attrs: Record<string, unknown> })[] {
    return this.of('logs');
  }

  of(signal: Received['signal']): (Received & { attrs: Record<string, unknown> })[] {
    return this.items
      .filter((i) => i.signal === signal)
      .map((i) => ({ ...i, attrs: flatAttrs(i.item.attributes) }));
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
