import type { Resource } from '../model/resources.js';

type Route = NonNullable<Resource<'Service'>['spec']['routes']>[number];

/** A compiled route table of one service: first match wins, as declared. */
export class RouteTable {
  readonly #routes: { name: string; methods?: ReadonlySet<string>; exact?: string; prefix?: string }[];

  constructor(routes: readonly Route[] = []) {
    this.#routes = routes.map((r) => ({
      name: r.name,
      ...(r.match.methods && { methods: new Set(r.match.methods) }),
      ...(r.match.path?.exact !== undefined && { exact: r.match.path.exact }),
      ...(r.match.path?.prefix !== undefined && { prefix: r.match.path.prefix.replace(/\/+$/, '') }),
    }));
  }

  /** The name of the first route matching, or undefined. `path` may carry a query string. */
  match(method: string, path: string): string | undefined {
    const q = path.indexOf('?');
    const p = q >= 0 ? path.slice(0, q) : path;
    for (const r of this.#routes) {
      if (r.methods && !r.methods.has(method)) continue;
      if (r.exact !== undefined && p !== r.exact) continue;
      // Prefixes match whole segments: `/products` matches `/products/1`, not `/productsx`.
      if (r.prefix !== undefined && r.prefix !== '' && p !== r.prefix && !p.startsWith(`${r.prefix}/`))
        continue;
      return r.name;
    }
    return undefined;
  }
}

/**
 * The service a request is for: `catalog`, `catalog.mesh` or `catalog:8080` in a Host header or
 * an absolute-form target. Returns the lowercase host without port and `.mesh` suffix.
 */
export function serviceHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h; // an IPv6 literal is never a service name
  const colon = h.lastIndexOf(':');
  if (colon >= 0) h = h.slice(0, colon);
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.endsWith('.mesh')) h = h.slice(0, -'.mesh'.length);
  return h;
}
