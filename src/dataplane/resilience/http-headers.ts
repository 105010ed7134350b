/**
 * HTTP headers as Node and undici hand them over: lowercase names, a string or (for repeated
 * fields such as `set-cookie`) an array of strings.
 */
export type HeaderMap = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Connection-scoped headers, meaningless once the response has left its connection. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);

/** All values of a header joined with `, ` (how HTTP combines repeated fields); undefined if absent. */
export function headerText(headers: HeaderMap, name: string): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.join(', ');
}

/** The comma-separated elements of a list header, trimmed and lowercased, empty ones dropped. */
export function headerTokens(headers: HeaderMap, name: string): string[] {
  const text = headerText(headers, name);
  if (text === undefined) return [];
  const out: string[] = [];
  for (const part of text.split(',')) {
    const token = part.trim().toLowerCase();
    if (token) out.push(token);
  }
  return out;
}

/** Names of the `Cache-Control` directives present (arguments dropped: `max-age=5` → `max-age`). */
export function cacheControlDirectives(headers: HeaderMap): Set<string> {
  const out = new Set<string>();
  for (const token of headerTokens(headers, 'cache-control')) {
    const eq = token.indexOf('=');
    out.add((eq < 0 ? token : token.slice(0, eq)).trim());
  }
  return out;
}

/**
 * A frozen copy without hop-by-hop headers and without undefined values, for responses kept in
 * memory and replayed later on another connection.
 */
export function storableHeaders(headers: HeaderMap): HeaderMap {
  const out: Record<string, string | readonly string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    out[name] = typeof value === 'string' ? value : Object.freeze([...value]);
  }
  return Object.freeze(out);
}

/** Approximate memory of headers, in bytes (one byte per character). */
export function headerBytes(headers: HeaderMap): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (typeof value === 'string') bytes += name.length + value.length + 4;
    else for (const v of value) bytes += name.length + v.length + 4;
  }
  return bytes;
}
