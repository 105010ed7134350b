import { request } from 'undici';
import { IsthmusError } from '../core/errors.js';

/**
 * A client of the link emulator's Toxiproxy-compatible API (docs/link.md): the calls the lab
 * needs, nothing Isthmus-specific, so it would drive a real Toxiproxy just as well.
 */

export interface ToxicJson {
  name: string;
  type: string;
  stream: 'upstream' | 'downstream';
  toxicity?: number;
  attributes: Record<string, unknown>;
}

export interface LinkProxyJson {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
  toxics: ToxicJson[];
  [extra: string]: unknown;
}

export class LinkClient {
  constructor(readonly baseUrl: string) {}

  async #call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res;
    try {
      res = await request(`${this.baseUrl}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body !== undefined && { body: JSON.stringify(body) }),
        headersTimeout: 5000,
        bodyTimeout: 5000,
      });
    } catch (err) {
      throw new IsthmusError(
        'ISTHMUS_E_IO',
        `cannot reach the link emulator at ${this.baseUrl}: ${(err as Error).message}`,
      );
    }
    const text = await res.body.text();
    if (res.statusCode >= 300)
      throw new IsthmusError(
        'ISTHMUS_E_IO',
        `link emulator: ${method} ${path} answered ${res.statusCode}: ${text.slice(0, 300)}`,
      );
    return (text ? JSON.parse(text) : undefined) as T;
  }

  async proxies(): Promise<LinkProxyJson[]> {
    const all = await this.#call<Record<string, LinkProxyJson>>('GET', '/proxies');
    return Object.values(all);
  }

  addToxic(proxy: string, toxic: ToxicJson): Promise<ToxicJson> {
    return this.#call('POST', `/proxies/${encodeURIComponent(proxy)}/toxics`, toxic);
  }

  removeToxic(proxy: string, toxic: string): Promise<void> {
    return this.#call('DELETE', `/proxies/${encodeURIComponent(proxy)}/toxics/${encodeURIComponent(toxic)}`);
  }

  reset(): Promise<void> {
    return this.#call('POST', '/reset');
  }
}
