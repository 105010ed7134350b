import { systemClock, type Clock } from '../../core/clock.js';
import { IsthmusError } from '../../core/errors.js';
import { closestMatch } from '../../core/text.js';
import { parseProxySpec, type LinkProxySpec } from './config.js';
import { LinkProxy, type LinkProxyConfig } from './proxy.js';

export interface LinkEmulatorOptions {
  /** Seed of every random decision (toxicity draws, latency samples, loss); default 0. */
  seed?: number;
  /** Monotonic time for chunk arrival and release (default: the system clock). */
  clock?: Clock;
}

/**
 * The WAN link emulator: a set of named, directed links (TCP proxies) with toxics. The HTTP API
 * (`./api.ts`, Toxiproxy-compatible) and the lab drive it; tests use it directly.
 */
export class LinkEmulator {
  readonly seed: number;
  readonly #clock: Clock;
  readonly #proxies = new Map<string, LinkProxy>();

  constructor(options: LinkEmulatorOptions = {}) {
    this.seed = options.seed ?? 0;
    this.#clock = options.clock ?? systemClock;
  }

  /** Creates and (unless `enabled: false`) starts a link; a name in use is ISTHMUS_E_EXISTS. */
  async createProxy(config: LinkProxyConfig | LinkProxySpec): Promise<LinkProxy> {
    const spec = parseProxySpec(config, 'proxy', false);
    if (this.#proxies.has(spec.name))
      throw new IsthmusError('ISTHMUS_E_EXISTS', `proxy "${spec.name}" already exists`);
    const proxy = new LinkProxy(spec, this.seed, this.#clock);
    this.#proxies.set(spec.name, proxy);
    try {
      for (const t of spec.toxics ?? []) await proxy.addToxic(t);
      await proxy.start();
    } catch (err) {
      this.#proxies.delete(spec.name);
      await proxy.close();
      throw err;
    }
    return proxy;
  }

  has(name: string): boolean {
    return this.#proxies.has(name);
  }

  /** The link of that name, or ISTHMUS_E_NOT_FOUND. */
  get(name: string): LinkProxy {
    const proxy = this.#proxies.get(name);
    if (!proxy) {
      const guess = closestMatch(name, this.#proxies.keys());
      throw new IsthmusError(
        'ISTHMUS_E_NOT_FOUND',
        `proxy "${name}" does not exist${guess ? `; did you mean "${guess}"?` : ''}`,
      );
    }
    return proxy;
  }

  list(): LinkProxy[] {
    return [...this.#proxies.values()];
  }

  async update(
    name: string,
    changes: { enabled?: boolean; listen?: string; upstream?: string },
  ): Promise<LinkProxy> {
    const proxy = this.get(name);
    await proxy.update(changes);
    return proxy;
  }

  async remove(name: string): Promise<void> {
    const proxy = this.get(name);
    this.#proxies.delete(name);
    await proxy.close();
  }

  /**
   * Toxiproxy's populate: creates missing links, recreates those whose listen or upstream
   * changed, keeps identical ones (their connections and toxics survive; `enabled` and the
   * labels are updated). A spec's `toxics`, when given, replace the link's toxics.
   */
  async populate(configs: readonly (LinkProxyConfig | LinkProxySpec)[]): Promise<LinkProxy[]> {
    // Validate everything first: a bad entry changes nothing.
    const specs = configs.map((c, i) => parseProxySpec(c, `proxies[${i}]`, false));
    const out: LinkProxy[] = [];
    for (const spec of specs) {
      const existing = this.#proxies.get(spec.name);
      if (existing && existing.sameAddresses(spec)) {
        existing.from = spec.from;
        existing.to = spec.to;
        existing.purpose = spec.purpose;
        if (spec.toxics) {
          await existing.removeToxics(() => true);
          for (const t of spec.toxics)
            await existing.addToxic({ ...t, firstConnection: existing.nextConnection });
        }
        await existing.update({ enabled: spec.enabled ?? true });
        out.push(existing);
        continue;
      }
      if (existing) await this.remove(spec.name);
      out.push(await this.createProxy(spec));
    }
    return out;
  }

  /** Enables every link and removes every toxic. */
  async reset(): Promise<void> {
    for (const proxy of this.#proxies.values()) await proxy.reset();
  }

  /** Closes every listener and connection. */
  async close(): Promise<void> {
    const all = [...this.#proxies.values()];
    this.#proxies.clear();
    await Promise.all(all.map((p) => p.close()));
  }
}
