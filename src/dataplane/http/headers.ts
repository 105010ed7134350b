import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded.
 * Plus the names a `Connection` header lists.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

/** Headers Isthmus sets itself between hops; a value from outside the mesh is not trusted. */
export const H = {
  requestId: 'x-request-id',
  deadline: 'isthmus-deadline-ms',
  attempt: 'isthmus-attempt',
  attempts: 'isthmus-attempts',
  servedBy: 'isthmus-served-by',
  fallback: 'isthmus-fallback',
  degraded: 'isthmus-degraded',
  degradedFlags: 'isthmus-degraded-flags',
  error: 'isthmus-error',
  staleness: 'isthmus-staleness-ms',
  viaGateway: 'isthmus-via-gateway',
  idempotencyReplay: 'isthmus-idempotent-replay',
} as const;

function connectionTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const text = Array.isArray(value) ? value.join(',') : value;
  return text
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
}

/** Copies end-to-end headers: drops hop-by-hop ones and any the `Connection` header names. */
export function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const connection = headers.connection;
  // The usual values list no other header: skip the parsing.
  const listed =
    connection === undefined || connection === 'keep-alive' || connection === 'close'
      ? []
      : connectionTokens(connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (listed.length > 0 && listed.includes(name))) continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** Appends a value to a header that may hold a list (Via, Forwarded). */
export function appendHeader(headers: OutgoingHttpHeaders, name: string, value: string): void {
  const prior = headers[name];
  headers[name] =
    prior === undefined ? value : `${Array.isArray(prior) ? prior.join(', ') : String(prior)}, ${value}`;
}

/** `Forwarded` element for a client (RFC 7239): IPv6 addresses are quoted and bracketed. */
export function forwardedFor(address: string | undefined, proto: string, host: string | undefined): string {
  const node = address === undefined ? 'unknown' : address.includes(':') ? `"[${address}]"` : address;
  const hostPart = host ? `;host="${host.replace(/["\\]/g, '')}"` : '';
  return `for=${node};proto=${proto}${hostPart}`;
}

/** The first value of a header, or undefined. */
export function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
export const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
