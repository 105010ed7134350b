import type { LinkProxyJson, ToxicJson } from '../chaos/link/index.js';
import { callJson } from './http-json.js';

/**
 * A client of the link emulator's Toxiproxy-compatible API (docs/link.md): the calls the lab
 * needs, nothing Isthmus-specific, so it would drive a real Toxiproxy just as well.
 */

/** A toxic to add: Toxiproxy's shape, toxicity defaulting to 1. */
export type ToxicRequest = Omit<ToxicJson, 'toxicity'> & { toxicity?: number };

export class LinkClient {
  constructor(readonly baseUrl: string) {}

  #call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    return callJson<T>(this.baseUrl, method, path, { body, timeoutMs: 5000, what: 'the link emulator' });
  }

  async proxies(): Promise<LinkProxyJson[]> {
    return Object.values(await this.#call<Record<string, LinkProxyJson>>('GET', '/proxies'));
  }

  addToxic(proxy: string, toxic: ToxicRequest): Promise<ToxicJson> {
    return this.#call('POST', `/proxies/${encodeURIComponent(proxy)}/toxics`, toxic);
  }

  removeToxic(proxy: string, toxic: string): Promise<void> {
    return this.#call('DELETE', `/proxies/${encodeURIComponent(proxy)}/toxics/${encodeURIComponent(toxic)}`);
  }

  reset(): Promise<void> {
    return this.#call('POST', '/reset');
  }
}
