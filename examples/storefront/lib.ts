/**
 * What every storefront app shares: command-line options, JSON in and out, a client for the
 * sidecar's outbound listener, the `ready` line the lab waits for, and a graceful stop.
 *
 * The apps are deliberately plain node:http servers: they stand in for a team's services, so the
 * mesh (not the app) does failover, retries, deadlines and idempotent replay.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { Pool } from 'undici';

type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** The options every app takes. */
export interface AppIdentity {
  /** Service name reported in responses and the ready line. */
  service: string;
  region: string;
  zone: string;
  /** Instance name; `SERVICE-PID` by default. */
  instance: string;
}

export interface AppOptions extends AppIdentity {
  listen: { host: string; port: number };
  /** Outbound listener of the sidecar (`--proxy` or `HTTP_PROXY`), when given. */
  proxy?: URL;
  /** Seed of the app's randomness (`--seed`, default 1). */
  seed: number;
  /** App-specific options, as strings (booleans as `true`). */
  extra: Record<string, string | boolean | undefined>;
}

const COMMON: OptionSpec = {
  service: { type: 'string' },
  listen: { type: 'string' },
  proxy: { type: 'string' },
  region: { type: 'string' },
  zone: { type: 'string' },
  instance: { type: 'string' },
  seed: { type: 'string' },
  help: { type: 'boolean' },
};

/** Bad command-line input: printed as one JSON line on stderr, exit code 2, nothing starts. */
export class UsageError extends Error {}

/** Splits `HOST:PORT` (IPv6 in brackets). */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new UsageError(`${what}: invalid address ${JSON.stringify(text)}: write HOST:PORT`);
  return { host: m[1] ?? m[2] ?? '', port };
}

/** A number from an option, within bounds, or a UsageError naming the option. */
export function numberOption(
  value: string | boolean | undefined,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  if (!Number.isFinite(n) || n < min || n > max)
    throw new UsageError(`--${name}: expected a number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * Parses `argv` (without node and the script). `defaults.port` is the service's port from
 * examples/mesh/services; `extra` declares app-specific string options.
 */
export function parseAppArgs(
  argv: readonly string[],
  defaults: { service: string; port: number; usage: string },
  extra: OptionSpec = {},
): AppOptions {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options: { ...COMMON, ...extra }, strict: true }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${defaults.usage}`);
  }
  if (values.help) {
    process.stdout.write(`${defaults.usage}\n`);
    process.exit(0);
  }
  const str = (name: string) => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const service = str('service') ?? defaults.service;
  if (!/^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/.test(service))
    throw new UsageError(
      `--service: ${JSON.stringify(service)} is not a service name (lowercase, digits, "-")`,
    );
  const proxyText = str('proxy') ?? process.env.HTTP_PROXY ?? process.env.http_proxy;
  let proxy: URL | undefined;
  if (proxyText) {
    try {
      proxy = new URL(proxyText);
    } catch {
      proxy = undefined;
    }
    if (!proxy || proxy.protocol !== 'http:' || !proxy.port)
      throw new UsageError(
        `--proxy: invalid URL ${JSON.stringify(proxyText)}: write http://HOST:PORT (the sidecar's outbound listener)`,
      );
  }
  const extraValues: Record<string, string | boolean | undefined> = {};
  for (const name of Object.keys(extra)) {
    const v = values[name];
    extraValues[name] = Array.isArray(v) ? v[v.length - 1] : v;
  }
  return {
    service,
    listen: parseHostPort(str('listen') ?? `127.0.0.1:${defaults.port}`, '--listen'),
    ...(proxy && { proxy }),
    region: str('region') ?? 'local',
    zone: str('zone') ?? `${str('region') ?? 'local'}-a`,
    instance: str('instance') ?? `${service}-${process.pid}`,
    seed: numberOption(values.seed as string | undefined, 'seed', 1, 0, 2 ** 31 - 1),
    extra: extraValues,
  };
}

/** Uniform in [0, 1) from a seed: the same seed gives the same run. */
export function seededRandom(seed: number): () => number {
  const rng = xoroshiro128plus(seed | 0);
  return () => uniformFloat64(rng);
}

/** An integer query parameter within bounds, or 400 naming it. */
export function queryInt(url: URL, name: string, fallback: number, min: number, max: number): number {
  const v = url.searchParams.get(name);
  if (v === null) return fallback;
  const n = /^-?\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new HttpError(400, 'invalid-parameter', `?${name}= must be an integer from ${min} to ${max}`, {
      parameter: name,
      found: v,
    });
  return n;
}

/** A decoded path segment; malformed percent-encoding is 400, not a crash. */
export function pathParam(segment: string | undefined): string {
  try {
    return decodeURIComponent(segment ?? '');
  } catch {
    throw new HttpError(400, 'invalid-path', `malformed percent-encoding in ${JSON.stringify(segment)}`);
  }
}

/** A stable 32-bit hash of a string (FNV-1a), for deterministic per-key choices. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** An answer other than 2xx, as JSON `{error, message, ...details}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

const MAX_BODY_BYTES = 64 * 1024;

/** Reads a JSON request body (at most 64 KiB); 400 or 413 as an HttpError otherwise. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new HttpError(413, 'body-too-large', `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '')
    throw new HttpError(400, 'invalid-json', 'request body is empty: send a JSON object');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, 'invalid-json', `request body is not JSON: ${(err as Error).message}`);
  }
}

/** The first value of a request header. */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Headers an app forwards on every downstream call: trace context and the request id. */
export const PROPAGATED_HEADERS = ['traceparent', 'tracestate', 'baggage', 'x-request-id'] as const;

export function propagated(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PROPAGATED_HEADERS) {
    const v = header(headers, name);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** A comma-separated header as a list (`isthmus-degraded: catalog,recommendations`). */
export function headerList(headers: IncomingHttpHeaders, name: string): string[] {
  const v = header(headers, name);
  return v
    ? v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

/** What one downstream call through the sidecar did, as reported in app responses. */
export interface CallReport {
  /** HTTP status, or null when no answer came (connection failure, timeout) or it was skipped. */
  status: number | null;
  /** `isthmus-served-by`: REGION/ZONE (or REGION) that answered. */
  servedBy: string | null;
  /** `isthmus-attempts`. */
  attempts: number | null;
  /** `isthmus-fallback`: `stale` or `static` when the sidecar answered from a fallback. */
  fallback: string | null;
  /** `isthmus-degraded` on the answer: `failover:pN`, `panic`, `stale-if-error`, `static-fallback`. */
  degraded: string | null;
  /** `isthmus-idempotent-replay: true`. */
  replayed: boolean;
  /** `isthmus-error` code of the sidecar, or the client's error code when no answer came. */
  error: string | null;
  durationMs: number;
  /** Set when the call was not made, with why (e.g. `recommendations-off`). */
  skipped?: string;
}

export interface CallResult {
  report: CallReport;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body, or undefined when there is none or it is not JSON. */
  body: unknown;
}

export function skippedCall(reason: string): CallReport {
  return {
    status: null,
    servedBy: null,
    attempts: null,
    fallback: null,
    degraded: null,
    replayed: false,
    error: null,
    durationMs: 0,
    skipped: reason,
  };
}

/**
 * Calls mesh services through the sidecar's outbound listener with Host routing (`Host: catalog`).
 * Never throws: a failure is a result with `status: null` and an `error`.
 */
export class SidecarClient {
  readonly #pool: Pool;

  constructor(proxy: URL) {
    this.#pool = new Pool(proxy.origin, { connections: 256, keepAliveTimeout: 10_000 });
  }

  async call(
    service: string,
    init: {
      method?: 'GET' | 'POST';
      path: string;
      headers?: Record<string, string>;
      body?: string;
      /** Bound on the whole call; the sidecar's own deadline normally ends it first. */
      timeoutMs: number;
    },
  ): Promise<CallResult> {
    const started = performance.now();
    const report = (status: number | null, h: IncomingHttpHeaders, error: string | null): CallReport => {
      const attempts = Number(header(h, 'isthmus-attempts'));
      return {
        status,
        servedBy: header(h, 'isthmus-served-by') ?? null,
        attempts: Number.isInteger(attempts) && attempts > 0 ? attempts : null,
        fallback: header(h, 'isthmus-fallback') ?? null,
        degraded: header(h, 'isthmus-degraded') ?? null,
        replayed: header(h, 'isthmus-idempotent-replay') === 'true',
        error: header(h, 'isthmus-error') ?? error,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
      };
    };
    try {
      const r = await this.#pool.request({
        method: init.method ?? 'GET',
        path: init.path,
        headers: {
          host: service,
          accept: 'application/json',
          ...(init.body !== undefined && { 'content-type': 'application/json' }),
          ...init.headers,
        },
        ...(init.body !== undefined && { body: init.body }),
        headersTimeout: init.timeoutMs,
        bodyTimeout: init.timeoutMs,
      });
      const text = await r.body.text();
      let body: unknown;
      try {
        body = text === '' ? undefined : (JSON.parse(text) as unknown);
      } catch {
        body = undefined;
      }
      const headers = r.headers as IncomingHttpHeaders;
      return { report: report(r.statusCode, headers, null), headers, body };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      return {
        report: report(null, {}, typeof code === 'string' ? code : 'request-failed'),
        headers: {},
        body: undefined,
      };
    }
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

/** A handler for `GET /healthz`, answered by every app. */
function healthz(identity: AppIdentity, res: ServerResponse): void {
  sendJson(res, 200, { status: 'ok', ...identity });
}

/**
 * Starts the app: listens, prints `{"event":"ready","role":"app",...}` on stdout, answers
 * `/healthz`, turns thrown HttpErrors into JSON answers and anything else into 500 (the process
 * never dies of a request), and stops on SIGTERM/SIGINT: no new connections, in-flight requests
 * finish (at most `drainMs`), exit 0.
 */
export async function serve(
  options: AppOptions,
  handler: Handler,
  hooks: { onStop?: () => Promise<void>; drainMs?: number; ready?: Record<string, unknown> } = {},
): Promise<http.Server> {
  const identity: AppIdentity = {
    service: options.service,
    region: options.region,
    zone: options.zone,
    instance: options.instance,
  };
  const server = http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://app.invalid');
    const run = async () => {
      if (url.pathname === '/healthz' && (req.method === 'GET' || req.method === 'HEAD'))
        return healthz(identity, res);
      await handler(req, res, url);
    };
    Promise.resolve()
      .then(run)
      .catch((err: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (err instanceof HttpError)
          sendJson(
            res,
            err.status,
            { error: err.code, message: err.message, ...err.details, ...identity },
            err.headers,
          );
        else {
          process.stderr.write(`${JSON.stringify({ event: 'handler-error', message: String(err) })}\n`);
          sendJson(res, 500, { error: 'internal', message: 'the app failed on this request', ...identity });
        }
      });
  });
  // Malformed HTTP gets 400 and a closed connection, never an exception.
  server.on('clientError', (_err, socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.listen.host, port: options.listen.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const drainMs = hooks.drainMs ?? 5000;
    // A last resort: a stuck client must not keep the lab waiting.
    setTimeout(() => process.exit(0), drainMs + 1000).unref();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), drainMs).unref();
    void closed
      .then(() => hooks.onStop?.())
      .catch(() => undefined)
      .then(() => {
        process.stdout.write(`${JSON.stringify({ event: 'stopped', role: 'app', signal, ...identity })}\n`);
        process.exit(0);
      });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.stdout.write(
    `${JSON.stringify({ event: 'ready', role: 'app', ...identity, address, pid: process.pid, ...hooks.ready })}\n`,
  );
  return server;
}

/** Runs `main`, turning a UsageError or a failed start into one JSON line on stderr and exit 2/1. */
export function run(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    const usage = err instanceof UsageError;
    process.stderr.write(
      `${JSON.stringify({ event: 'error', role: 'app', kind: usage ? 'usage' : 'start', message: (err as Error).message })}\n`,
    );
    process.exit(usage ? 2 : 1);
  });
}

export const newId = (): string => randomUUID();
