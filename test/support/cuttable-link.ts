import net, { type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP relay on 127.0.0.1 between a client and a server that a test can cut and heal: the
 * stand-in for a network partition in control-plane tests (the WAN emulator of the lab does more).
 * While cut, existing connections are reset and new ones are accepted and closed at once.
 */
export class CuttableLink {
  readonly #server: Server;
  readonly #pairs = new Set<[Socket, Socket]>();
  #cut = false;
  address = '';

  private constructor(readonly target: { host: string; port: number }) {
    this.#server = net.createServer((client) => this.#accept(client));
  }

  static async start(target: string): Promise<CuttableLink> {
    const m = /^(.*):(\d+)$/.exec(target.replace(/^[a-z]+:\/\//, ''));
    if (!m) throw new Error(`bad target ${target}`);
    const link = new CuttableLink({ host: m[1] as string, port: Number(m[2]) });
    await new Promise<void>((resolve) => link.#server.listen(0, '127.0.0.1', resolve));
    link.address = `127.0.0.1:${(link.#server.address() as AddressInfo).port}`;
    return link;
  }

  get url(): string {
    return `http://${this.address}`;
  }

  #accept(client: Socket): void {
    if (this.#cut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    const pair: [Socket, Socket] = [client, upstream];
    this.#pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  }

  /** Resets every connection and refuses new ones until `heal`. */
  cut(): void {
    this.#cut = true;
    for (const [a, b] of this.#pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.#pairs.clear();
  }

  heal(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
