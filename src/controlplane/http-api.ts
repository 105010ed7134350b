import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { IsthmusError, isIsthmusError } from '../core/errors.js';

/** Small helpers for the control planes' JSON HTTP APIs. */

/** An API error with its HTTP status; the body is `{error: code, message, ...extra}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
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
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export function sendText(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; version=0.0.4',
): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const ENCODINGS = ['identity', 'gzip', 'x-gzip', 'deflate'] as const;

/**
 * Reads a JSON object body of at most `maxBytes` (before and after decompression); a bad body is
 * a 4xx ApiError naming the problem. `Content-Encoding: gzip` or `deflate` bodies (what
 * OpenTelemetry exporters send by default) are decompressed; the bound holds for the decompressed
 * size too, so a small compressed body cannot expand into gigabytes.
 */
export async function readJson(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const body = await readBody(req, maxBytes, 'application/json');
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new ApiError(400, 'ISTHMUS_E_USAGE', `the body is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new ApiError(400, 'ISTHMUS_E_USAGE', 'the body must be a JSON object');
  return value as Record<string, unknown>;
}

/** Whether a request's body is of media type `type` (parameters aside). */
export function isMediaType(req: IncomingMessage, type: string): boolean {
  return (
    String(req.headers['content-type'] ?? '')
      .split(';')[0]
      ?.trim()
      .toLowerCase() === type
  );
}

/**
 * Reads a body of media type `type` (any parameters allowed) and at most `maxBytes`, decompressed
 * as readJson does; another media type is a 415.
 */
export async function readBody(req: IncomingMessage, maxBytes: number, type: string): Promise<Buffer> {
  if (!isMediaType(req, type)) {
    req.resume();
    const given = String(req.headers['content-type'] ?? '');
    throw new ApiError(
      415,
      'ISTHMUS_E_USAGE',
      `send the body as ${type} (got ${given || 'no content-type'})`,
    );
  }
  const encoding = String(req.headers['content-encoding'] ?? 'identity')
    .trim()
    .toLowerCase();
  if (!(ENCODINGS as readonly string[]).includes(encoding)) {
    req.resume();
    throw new ApiError(
      415,
      'ISTHMUS_E_USAGE',
      `content-encoding ${JSON.stringify(encoding)} is not supported: send gzip, deflate or no encoding`,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      req.resume();
      throw new ApiError(413, 'ISTHMUS_E_USAGE', `the body is larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  const body = Buffer.concat(chunks);
  return encoding === 'identity'
    ? body
    : decompress(body, encoding === 'deflate' ? 'deflate' : 'gzip', maxBytes);
}

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);

async function decompress(body: Buffer, encoding: 'gzip' | 'deflate', maxBytes: number): Promise<Buffer> {
  try {
    return await (encoding === 'gzip' ? gunzip : inflate)(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      throw new ApiError(
        413,
        'ISTHMUS_E_USAGE',
        `the body is larger than ${maxBytes} bytes once decompressed`,
      );
    throw new ApiError(
      400,
      'ISTHMUS_E_USAGE',
      `the body is not valid ${encoding} data (content-encoding: ${encoding}): ${(err as Error).message}`,
    );
  }
}

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

/** Wraps a handler so every error becomes a JSON answer (and a bug a 500, never a crash). */
export function apiHandler(handler: Handler, log?: (e: Record<string, unknown>) => void) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      sendJson(res, 400, { error: 'ISTHMUS_E_USAGE', message: 'unparseable request target' });
      return;
    }
    Promise.resolve()
      .then(() => handler(req, res, url))
      .catch((err: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (err instanceof ApiError)
          sendJson(res, err.status, { error: err.code, message: err.message, ...err.extra });
        else if (isIsthmusError(err)) {
          const status =
            err.code === 'ISTHMUS_E_NOT_FOUND' ? 404 : err.code === 'ISTHMUS_E_STORE' ? 503 : 400;
          sendJson(res, status, { error: err.code, message: err.message });
        } else {
          log?.({ event: 'api-error', path: url.pathname, error: (err as Error).stack ?? String(err) });
          sendJson(res, 500, { error: 'internal', message: (err as Error).message });
        }
      });
  };
}

export function listen(server: Server, listenAddress: string): Promise<string> {
  const m = /^(.*):(\d+)$/.exec(listenAddress);
  if (!m) throw new IsthmusError('ISTHMUS_E_USAGE', `listen address "${listenAddress}" is not HOST:PORT`);
  const host = (m[1] as string).replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve, reject) => {
    server.once('error', (err) =>
      reject(new IsthmusError('ISTHMUS_E_IO', `cannot listen on ${listenAddress}: ${err.message}`)),
    );
    server.listen(Number(m[2]), host, () => {
      const a = server.address() as AddressInfo;
      resolve(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
    });
  });
}

export function createApiServer(handler: Handler, log?: (e: Record<string, unknown>) => void): Server {
  const server = http.createServer(
    { headersTimeout: 10_000, requestTimeout: 60_000 },
    apiHandler(handler, log),
  );
  server.keepAliveTimeout = 5_000;
  return server;
}

export function methodNotAllowed(allowed: string): never {
  throw new ApiError(405, 'ISTHMUS_E_USAGE', `use ${allowed}`);
}
