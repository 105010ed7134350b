import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { IsthmusError, isIsthmusError, type ErrorCode } from '../../core/errors.js';
import { closestMatch, listOr } from '../../core/text.js';
import { parseProxySpec, parseProxySpecs } from './config.js';
import type { LinkEmulator } from './emulator.js';
import { splitHostPort, type LinkProxy } from './proxy.js';
import { parseToxic, toxicJson, updateToxic, type ToxicStream } from './toxics.js';

/**
 * The link emulator's HTTP API: Toxiproxy's (so its clients work unchanged) plus region helpers
 * under /isthmus/v1/. Errors use Toxiproxy's shape `{error, status}` plus the Isthmus `code`.
 */

/** The Toxiproxy API version this one follows. */
export const TOXIPROXY_COMPAT_VERSION = '2.12.0';
const MAX_BODY_BYTES = 1024 * 1024;
/** Toxics the region helpers add are named with this prefix, so `heal` finds them. */
export const HELPER_PREFIX = 'isthmus-partition-';

const STATUS: Partial<Record<ErrorCode, number>> = {
  ISTHMUS_E_NOT_FOUND: 404,
  ISTHMUS_E_EXISTS: 409,
  ISTHMUS_E_IO: 500,
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `the body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, `bad request body: not JSON (${(err as Error).message})`);
  }
}

function bad(field: string, message: string): IsthmusError {
  return new IsthmusError('ISTHMUS_E_INVALID_VALUE', `${field}: ${message}`);
}

/** Checks an Isthmus endpoint's body: an object with only `allowed` fields. */
function strictBody(value: unknown, allowed: readonly string[], required: boolean): Record<string, unknown> {
  if (value === undefined && !required) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw bad('body', 'must be a JSON object');
  for (const k of Object.keys(value)) {
    if (!allowed.includes(k)) {
      const guess = closestMatch(k, allowed);
      throw bad(
        k,
        `unknown field${guess ? `; did you mean "${guess}"?` : ''} (fields: ${allowed.join(', ')})`,
      );
    }
  }
  return value as Record<string, unknown>;
}

function choice<T extends string>(
  body: Record<string, unknown>,
  field: string,
  choices: readonly T[],
  fallback?: T,
): T {
  const v = body[field];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v))
    throw bad(field, `${v === undefined ? 'missing' : JSON.stringify(v)}; use ${listOr([...choices])}`);
  return v as T;
}

function label(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/.test(v))
    throw bad(field, `${JSON.stringify(v)} is not a region or purpose name (e.g. eu-west)`);
  return v;
}

/** One link to cut: which link, on which of its streams. */
interface Cut {
  proxy: LinkProxy;
  streams: ToxicStream[];
}

const BOTH: ToxicStream[] = ['upstream', 'downstream'];

/**
 * Which links a partition request cuts. Links are per *initiating* side (`from` dials `to`), so
 * a one-way cut A→B holds the bytes A sends to B: the upstream stream of A→B links and the
 * downstream stream of B→A links.
 */
export function selectCuts(
  links: readonly LinkProxy[],
  sel: { region?: string; from?: string; to?: string; direction: 'both' | 'one-way'; purpose?: string },
): Cut[] {
  const cuts: Cut[] = [];
  for (const p of links) {
    if (sel.purpose !== undefined && p.purpose !== sel.purpose) continue;
    if (sel.region !== undefined) {
      if (p.from === sel.region || p.to === sel.region) cuts.push({ proxy: p, streams: BOTH });
      continue;
    }
    const forward =
      (sel.from === undefined || p.from === sel.from) && (sel.to === undefined || p.to === sel.to);
    const backward =
      (sel.from === undefined || p.to === sel.from) && (sel.to === undefined || p.from === sel.to);
    if (sel.direction === 'both') {
      if (forward || backward) cuts.push({ proxy: p, streams: BOTH });
    } else if (forward) cuts.push({ proxy: p, streams: ['upstream'] });
    else if (backward) cuts.push({ proxy: p, streams: ['downstream'] });
  }
  return cuts;
}

async function applyCuts(
  cuts: readonly Cut[],
  tag: string,
  attributes: { mode: string; scope: string },
): Promise<{ proxy: string; toxic: string; stream: ToxicStream }[]> {
  const applied: { proxy: string; toxic: string; stream: ToxicStream }[] = [];
  for (const { proxy, streams } of cuts) {
    for (const stream of streams) {
      const name = `${HELPER_PREFIX}${tag}-${stream}`;
      const toxic = parseToxic(
        { name, type: 'partition', stream, toxicity: 1, attributes },
        'partition',
        proxy.nextConnection,
      );
      await proxy.setToxic(toxic);
      applied.push({ proxy: proxy.name, toxic: name, stream });
    }
  }
  return applied;
}

function knownRegions(links: readonly LinkProxy[]): string[] {
  return [
    ...new Set(links.flatMap((p) => [p.from, p.to]).filter((r): r is string => r !== undefined)),
  ].sort();
}

function noLinks(what: string, links: readonly LinkProxy[]): IsthmusError {
  const regions = knownRegions(links);
  return new IsthmusError(
    'ISTHMUS_E_NOT_FOUND',
    `no link matches ${what}${regions.length ? ` (regions on links: ${regions.join(', ')})` : ' (no link has from/to labels)'}`,
  );
}

/** The API's request handler, for tests that mount it themselves. */
export function linkApiHandler(emulator: LinkEmulator, version: string) {
  const route = async (req: IncomingMessage, res: ServerResponse, path: string[]): Promise<void> => {
    const method = req.method ?? 'GET';
    const [a, b, c, d, e] = path;
    if (a === 'version' && path.length === 1 && method === 'GET') {
      send(res, 200, { version: TOXIPROXY_COMPAT_VERSION, isthmus: version });
      return;
    }
    if (a === 'reset' && path.length === 1 && method === 'POST') {
      await emulator.reset();
      send(res, 204);
      return;
    }
    if (a === 'populate' && path.length === 1 && method === 'POST') {
      let body = await readBody(req);
      if (body !== null && typeof body === 'object' && !Array.isArray(body) && 'proxies' in body)
        body = body.proxies;
      const specs = parseProxySpecs(body ?? [], 'proxies');
      const proxies = await emulator.populate(specs);
      send(res, 201, { proxies: proxies.map((p) => p.toJSON()) });
      return;
    }
    if (a === 'proxies') {
      if (path.length === 1) {
        if (method === 'GET') {
          send(res, 200, Object.fromEntries(emulator.list().map((p) => [p.name, p.toJSON()])));
          return;
        }
        if (method === 'POST') {
          const spec = parseProxySpec(await readBody(req), 'proxy');
          if (emulator.has(spec.name))
            throw new IsthmusError('ISTHMUS_E_EXISTS', `proxy "${spec.name}" already exists`);
          send(res, 201, (await emulator.createProxy(spec)).toJSON());
          return;
        }
      }
      if (b !== undefined && path.length === 2) {
        if (method === 'GET') {
          send(res, 200, emulator.get(b).toJSON());
          return;
        }
        if (method === 'POST' || method === 'PATCH') {
          const proxy = emulator.get(b);
          const body = (await readBody(req)) ?? {};
          if (typeof body !== 'object' || Array.isArray(body) || body === null)
            throw bad('proxy', 'must be an object');
          const { enabled, listen, upstream } = body as Record<string, unknown>;
          if (enabled !== undefined && typeof enabled !== 'boolean')
            throw bad('enabled', 'must be true or false');
          if (listen !== undefined && typeof listen !== 'string') throw bad('listen', 'must be HOST:PORT');
          if (upstream !== undefined && typeof upstream !== 'string')
            throw bad('upstream', 'must be HOST:PORT');
          if (listen !== undefined) splitHostPort(listen, 'listen');
          if (upstream !== undefined) splitHostPort(upstream, 'upstream');
          await proxy.update({
            ...(enabled !== undefined && { enabled }),
            ...(listen !== undefined && { listen }),
            ...(upstream !== undefined && { upstream }),
          });
          send(res, 200, proxy.toJSON());
          return;
        }
        if (method === 'DELETE') {
          await emulator.remove(b);
          send(res, 204);
          return;
        }
      }
      if (b !== undefined && c === 'toxics') {
        const proxy = emulator.get(b);
        if (path.length === 3) {
          if (method === 'GET') {
            send(res, 200, proxy.toxics().map(toxicJson));
            return;
          }
          if (method === 'POST') {
            const toxic = parseToxic(await readBody(req), 'toxic', proxy.nextConnection);
            send(res, 200, toxicJson(await proxy.addToxic(toxic)));
            return;
          }
        }
        if (d !== undefined && path.length === 4) {
          if (method === 'GET') {
            send(res, 200, toxicJson(proxy.getToxic(d)));
            return;
          }
          if (method === 'POST' || method === 'PATCH') {
            const toxic = updateToxic(proxy.getToxic(d), await readBody(req), 'toxic');
            send(res, 200, toxicJson(await proxy.replaceToxic(toxic)));
            return;
          }
          if (method === 'DELETE') {
            await proxy.removeToxic(d);
            send(res, 204);
            return;
          }
        }
      }
    }
    if (a === 'isthmus' && b === 'v1' && path.length === 3 && e === undefined) {
      if (c === 'links' && method === 'GET') {
        send(
          res,
          200,
          emulator.list().map((p) => {
            const j = p.toJSON();
            return {
              name: j.name,
              from: j.from ?? null,
              to: j.to ?? null,
              purpose: j.purpose ?? null,
              enabled: j.enabled,
              listen: j.listen,
              upstream: j.upstream,
              toxics: j.toxics.map((t) => t.name),
              stats: j.stats,
            };
          }),
        );
        return;
      }
      if (c === 'partition' && method === 'POST') {
        const body = strictBody(
          await readBody(req),
          ['region', 'from', 'to', 'mode', 'direction', 'scope', 'purpose'],
          true,
        );
        const region = label(body, 'region');
        const from = label(body, 'from');
        const to = label(body, 'to');
        const purpose = label(body, 'purpose');
        const mode = choice(body, 'mode', ['blackhole', 'reject', 'reset'], 'blackhole');
        const direction = choice(body, 'direction', ['both', 'one-way'], 'both');
        const scope = choice(body, 'scope', ['new', 'all'], 'all');
        if (region === undefined && from === undefined && to === undefined)
          throw bad('region', 'give region, or from and/or to');
        if (region !== undefined && (from !== undefined || to !== undefined))
          throw bad('region', 'give either region or from/to, not both');
        if (direction === 'one-way' && region !== undefined)
          throw bad('direction', 'one-way needs from and/or to (which side sends into the cut), not region');
        const what = region !== undefined ? `region ${region}` : `${from ?? '*'}->${to ?? '*'}`;
        const cuts = selectCuts(emulator.list(), {
          direction,
          ...(region !== undefined && { region }),
          ...(from !== undefined && { from }),
          ...(to !== undefined && { to }),
          ...(purpose !== undefined && { purpose }),
        });
        if (cuts.length === 0)
          throw noLinks(`${what}${purpose ? ` with purpose ${purpose}` : ''}`, emulator.list());
        const tag =
          region !== undefined
            ? region
            : `${from ?? 'any'}-to-${to ?? 'any'}${direction === 'one-way' ? '-oneway' : ''}`;
        const applied = await applyCuts(cuts, `${tag}${purpose ? `-${purpose}` : ''}`, { mode, scope });
        send(res, 200, { partition: { what, mode, direction, scope, purpose: purpose ?? null }, applied });
        return;
      }
      if (c === 'isolate' && method === 'POST') {
        const body = strictBody(await readBody(req), ['target', 'purpose', 'mode', 'scope'], true);
        const target = label(body, 'target');
        if (target === undefined) throw bad('target', 'missing (e.g. "global")');
        const purpose = label(body, 'purpose');
        const mode = choice(body, 'mode', ['blackhole', 'reject', 'reset'], 'blackhole');
        const scope = choice(body, 'scope', ['new', 'all'], 'all');
        const cuts = emulator
          .list()
          .filter((p) => p.to === target && (purpose === undefined || p.purpose === purpose))
          .map((proxy) => ({ proxy, streams: BOTH }));
        if (cuts.length === 0)
          throw noLinks(`to ${target}${purpose ? ` with purpose ${purpose}` : ''}`, emulator.list());
        const applied = await applyCuts(cuts, `isolate-${target}${purpose ? `-${purpose}` : ''}`, {
          mode,
          scope,
        });
        send(res, 200, { isolate: { target, mode, scope, purpose: purpose ?? null }, applied });
        return;
      }
      if (c === 'heal' && method === 'POST') {
        const body = strictBody(await readBody(req), ['region'], false);
        const region = label(body, 'region');
        let removed = 0;
        for (const p of emulator.list()) {
          if (region === undefined) removed += await p.removeToxics(() => true);
          else if (p.from === region || p.to === region)
            removed += await p.removeToxics((t) => t.name.startsWith(HELPER_PREFIX));
        }
        send(res, 200, { removed });
        return;
      }
    }
    throw new HttpError(404, `no such endpoint: ${method} /${path.join('/')}`);
  };

  return (req: IncomingMessage, res: ServerResponse): void => {
    let path: string[];
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname
        .split('/')
        .filter(Boolean)
        .map((p) => decodeURIComponent(p));
    } catch {
      send(res, 400, { error: 'unparseable request target', status: 400 });
      return;
    }
    route(req, res, path).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) send(res, err.status, { error: err.message, status: err.status });
      else if (isIsthmusError(err)) {
        const status = STATUS[err.code] ?? 400;
        send(res, status, { error: err.message, status, code: err.code });
      } else send(res, 500, { error: (err as Error).message, status: 500 });
    });
  };
}

/** A running API server. */
export interface LinkApi {
  /** HOST:PORT it listens on. */
  address: string;
  close(): Promise<void>;
}

/** Serves the API for `emulator` on `listen` (HOST:PORT; port 0 picks one). */
export async function startLinkApi(
  emulator: LinkEmulator,
  listen: string,
  version = '0.0.0',
): Promise<LinkApi> {
  const { host, port } = splitHostPort(listen, '--listen');
  const server: Server = http.createServer(linkApiHandler(emulator, version));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new IsthmusError('ISTHMUS_E_IO', `cannot listen on ${listen}: ${err.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
