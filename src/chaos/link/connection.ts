import net, { type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../../core/clock.js';
import type { Random } from '../../core/random.js';
import { connectionRandom, sampleLatencyMs, sampleLossStallMs, sliceSizes } from './sampling.js';
import { num, str, type LatencyDistribution, type Toxic, type ToxicStream } from './toxics.js';

/** Counters of one link; `bytes` are counted as forwarded. */
export interface LinkStats {
  connections: { total: number; active: number; refused: number; reset: number };
  bytes: { upstream: number; downstream: number };
  /** Chunks held back by `latency` or `loss`. */
  chunksDelayed: number;
  /** Retransmission-like stalls applied by `loss`. */
  stalls: number;
}

export function emptyStats(): LinkStats {
  return {
    connections: { total: 0, active: 0, refused: 0, reset: 0 },
    bytes: { upstream: 0, downstream: 0 },
    chunksDelayed: 0,
    stalls: 0,
  };
}

/** What a connection needs from its link. */
export interface ConnectionHost {
  readonly name: string;
  readonly seed: number;
  readonly clock: Clock;
  readonly stats: LinkStats;
  readonly upstreamAddress: { host: string; port: number };
  toxics(): readonly Toxic[];
  connectionClosed(conn: LinkConnection): void;
}

/** Bytes a direction buffers before it stops reading its source (TCP backpressure then does the rest). */
const HIGH_WATER_BYTES = 256 * 1024;

type Item =
  { kind: 'data'; buf: Buffer; atMs: number; delayMs?: number } | { kind: 'end' } | { kind: 'reset' };

/**
 * One direction of a connection: bytes read from `src` pass, in order, through the toxics of
 * that stream and are written to `dst`. A single pump per direction handles one chunk at a time,
 * so a delayed chunk holds back the ones behind it (data order is kept); latency is measured from
 * each chunk's arrival, so chunks in flight overlap as on a real long link.
 */
class Direction {
  readonly #queue: Item[] = [];
  #queuedBytes = 0;
  #pumping = false;
  #bandwidthFreeAtMs = 0;
  #lostInARow = 0;
  readonly #random: Random;
  /** Bytes seen per limit_data toxic. */
  readonly #limitSeen = new Map<string, number>();
  dst: Socket | undefined;

  constructor(
    readonly conn: LinkConnection,
    readonly stream: ToxicStream,
    readonly src: Socket,
  ) {
    this.#random = connectionRandom(conn.host.seed, conn.host.name, conn.index, stream);
    src.on('data', (buf: Buffer) => this.#push({ kind: 'data', buf, atMs: conn.host.clock.monotonicMs() }));
    src.on('end', () => this.#push({ kind: 'end' }));
    src.on('error', () => this.#push({ kind: 'reset' }));
  }

  #push(item: Item): void {
    this.#queue.push(item);
    if (item.kind === 'data') {
      this.#queuedBytes += item.buf.length;
      if (this.#queuedBytes > HIGH_WATER_BYTES) this.src.pause();
    }
    this.kick();
  }

  /** Resumes the pump (after a toxic change, or once the upstream is connected). */
  kick(): void {
    if (!this.#pumping) void this.#pump();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#queue.length > 0 && !this.conn.closed) {
        if (!(await this.#step(this.#queue[0] as Item))) break;
      }
    } catch {
      // A socket went away mid-write: the connection is over.
      this.conn.destroy(false);
    } finally {
      this.#pumping = false;
    }
  }

  /** Handles the head of the queue; false when it must wait for a toxic change. */
  async #step(item: Item): Promise<boolean> {
    const dst = this.dst;
    if (!dst) return false;
    const toxics = this.conn.activeToxics(this.stream);
    if (toxics.some((t) => t.type === 'partition' && str(t, 'mode') === 'blackhole')) return false;
    if (item.kind === 'reset') {
      this.#queue.shift();
      this.conn.host.stats.connections.reset++;
      dst.resetAndDestroy();
      this.conn.destroy(false);
      return true;
    }
    if (item.kind === 'end') {
      const delayMs = toxics.filter((t) => t.type === 'slow_close').reduce((s, t) => s + num(t, 'delay'), 0);
      if (delayMs > 0 && !(await this.#sleep(delayMs))) return false;
      this.#queue.shift();
      dst.end();
      return true;
    }
    // timeout (Toxiproxy): no data passes while it is on; what arrives meanwhile is dropped.
    if (toxics.some((t) => t.type === 'timeout')) {
      this.#take();
      return true;
    }
    if (item.delayMs === undefined) {
      // Sampled once per chunk, in chunk order, so a replay with the same seed gets the same delays.
      let delayMs = 0;
      for (const t of toxics) {
        if (t.type === 'latency')
          delayMs += sampleLatencyMs(
            this.#random,
            num(t, 'latency'),
            num(t, 'jitter'),
            str(t, 'distribution') as LatencyDistribution,
          );
        else if (t.type === 'loss') {
          const stallMs = sampleLossStallMs(
            this.#random,
            num(t, 'probability'),
            num(t, 'stall'),
            this.#lostInARow,
          );
          if (stallMs > 0) {
            this.#lostInARow++;
            this.conn.host.stats.stalls++;
            delayMs += stallMs;
          } else this.#lostInARow = 0;
        }
      }
      item.delayMs = delayMs;
      if (delayMs > 0) this.conn.host.stats.chunksDelayed++;
    }
    const waitMs = item.atMs + item.delayMs - this.conn.host.clock.monotonicMs();
    if (waitMs > 0 && !(await this.#sleep(waitMs))) return false;

    let buf = item.buf;
    let closeAfter = false;
    for (const t of toxics) {
      if (t.type !== 'limit_data') continue;
      const seen = this.#limitSeen.get(t.name) ?? 0;
      const allowed = Math.max(0, num(t, 'bytes') - seen);
      if (buf.length >= allowed) {
        buf = buf.subarray(0, allowed);
        closeAfter = true;
      }
      this.#limitSeen.set(t.name, seen + buf.length);
    }

    const rates = toxics
      .filter((t) => t.type === 'bandwidth' && num(t, 'rate') > 0)
      .map((t) => num(t, 'rate'));
    const rateBytesPerMs = rates.length > 0 ? Math.min(...rates) : 0; // KB/s = bytes/ms
    const slicer = toxics.find((t) => t.type === 'slicer' && num(t, 'average_size') > 0);
    let pieces: Buffer[] = [buf];
    if (slicer) {
      pieces = [];
      let at = 0;
      for (const size of sliceSizes(
        this.#random,
        buf.length,
        num(slicer, 'average_size'),
        num(slicer, 'size_variation'),
      )) {
        pieces.push(buf.subarray(at, at + size));
        at += size;
      }
    } else if (rateBytesPerMs > 0) {
      // About 50 ms worth per write, so throughput is smooth rather than one burst per chunk.
      const step = Math.max(1, Math.floor(rateBytesPerMs * 50));
      pieces = [];
      for (let at = 0; at < buf.length; at += step) pieces.push(buf.subarray(at, at + step));
    }

    this.#take();
    for (const [i, piece] of pieces.entries()) {
      if (i > 0 && slicer && num(slicer, 'delay') > 0) await this.#sleep(num(slicer, 'delay') / 1000);
      if (rateBytesPerMs > 0) {
        const now = this.conn.host.clock.monotonicMs();
        this.#bandwidthFreeAtMs = Math.max(now, this.#bandwidthFreeAtMs) + piece.length / rateBytesPerMs;
        const wait = this.#bandwidthFreeAtMs - now;
        if (wait >= 1) await this.#sleep(wait);
      }
      if (this.conn.closed || dst.destroyed) return false;
      this.conn.host.stats.bytes[this.stream] += piece.length;
      if (!dst.write(piece)) await drained(dst);
    }
    if (closeAfter) this.conn.closeAfterLimit(dst);
    return true;
  }

  #take(): void {
    const item = this.#queue.shift();
    if (item?.kind === 'data') {
      this.#queuedBytes -= item.buf.length;
      if (this.#queuedBytes <= HIGH_WATER_BYTES / 2 && this.src.isPaused() && !this.src.destroyed)
        this.src.resume();
    }
  }

  /** Sleeps unless the connection closes first (then false). */
  async #sleep(ms: number): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal: this.conn.signal });
      return !this.conn.closed;
    } catch {
      return false;
    }
  }
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/**
 * A client connection through a link and its upstream connection. Connection-level toxics
 * (`reset_peer`, `timeout`, `partition` reset/reject) act here; byte-level ones in each Direction.
 */
export class LinkConnection {
  readonly #abort = new AbortController();
  readonly #timers = new Map<Toxic, NodeJS.Timeout>();
  readonly #applies = new Map<string, boolean>();
  readonly #up: Direction;
  #down: Direction | undefined;
  server: Socket | undefined;
  closed = false;
  #cutByReject = false;

  constructor(
    readonly host: ConnectionHost,
    readonly index: number,
    readonly client: Socket,
  ) {
    this.#up = new Direction(this, 'upstream', client);
    client.on('close', () => this.#maybeFinished());
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /**
   * Whether `toxic` acts on this connection: its toxicity is drawn once per connection from the
   * link's seeded generator, and `partition` with `scope: new` spares connections opened before it.
   */
  applies(toxic: Toxic): boolean {
    if (toxic.type === 'partition' && toxic.attributes.scope === 'new' && this.index < toxic.firstConnection)
      return false;
    if (toxic.toxicity >= 1) return true;
    if (toxic.toxicity <= 0) return false;
    let drawn = this.#applies.get(toxic.name);
    if (drawn === undefined) {
      drawn =
        connectionRandom(this.host.seed, this.host.name, this.index, `toxicity:${toxic.name}`).next() <
        toxic.toxicity;
      this.#applies.set(toxic.name, drawn);
    }
    return drawn;
  }

  activeToxics(stream?: ToxicStream): Toxic[] {
    return this.host.toxics().filter((t) => (stream === undefined || t.stream === stream) && this.applies(t));
  }

  /**
   * Called for a new connection and whenever the link's toxics change: resets what a partition
   * resets, (re)arms timers, dials the upstream once nothing holds the handshake back, and wakes
   * both directions. Returns false when the connection was turned away.
   */
  reconcile(isNew = false): boolean {
    if (this.closed) return false;
    const active = this.activeToxics();
    const partitions = active.filter((t) => t.type === 'partition');
    if (partitions.some((t) => t.attributes.mode === 'reset')) {
      this.host.stats.connections.reset++;
      this.destroy(true);
      return false;
    }
    if (partitions.some((t) => t.attributes.mode === 'reject' && t.stream === 'upstream')) {
      if (isNew) this.host.stats.connections.refused++;
      else this.host.stats.connections.reset++;
      this.destroy(true);
      return false;
    }
    // A downstream reject on an established connection: the server's packets are refused, so
    // the server end is reset; the client hears nothing more (its bytes are held).
    if (
      !isNew &&
      this.server &&
      partitions.some((t) => t.attributes.mode === 'reject' && t.stream === 'downstream')
    ) {
      this.host.stats.connections.reset++;
      this.#cutByReject = true;
      this.server.resetAndDestroy();
    }

    for (const [toxic, timer] of this.#timers)
      if (!active.includes(toxic)) {
        clearTimeout(timer);
        this.#timers.delete(toxic);
      }
    for (const t of active) {
      if (this.#timers.has(t)) continue;
      if (t.type === 'reset_peer') {
        this.#timers.set(
          t,
          setTimeout(
            () => {
              this.host.stats.connections.reset++;
              this.destroy(true);
            },
            num(t, 'timeout'),
          ),
        );
      } else if (t.type === 'timeout' && num(t, 'timeout') > 0) {
        this.#timers.set(
          t,
          setTimeout(() => this.destroy(false), num(t, 'timeout')),
        );
      }
    }

    // A downstream reject on a new connection: the server's SYN-ACK would be refused, so the
    // handshake never completes; the client (already accepted by our listener) hears nothing.
    const holdHandshake = partitions.some((t) => t.attributes.mode === 'reject' && t.stream === 'downstream');
    // Healed after a downstream reject reset the server end: the client's next segment would be
    // answered with RST, so its connection is reset now.
    if (this.server?.destroyed && !holdHandshake && this.#cutByReject) {
      this.host.stats.connections.reset++;
      this.destroy(true);
      return false;
    }
    if (!this.server && !holdHandshake) this.#dial();
    this.#up.kick();
    this.#down?.kick();
    return true;
  }

  #dial(): void {
    const { host, port } = this.host.upstreamAddress;
    const server = net.connect({ host, port, allowHalfOpen: true });
    this.server = server;
    server.setNoDelay(true);
    // An unreachable upstream: the client is closed, as Toxiproxy does (registered before the
    // direction's own error handler, which would reset the client).
    server.once('error', () => {
      if (!this.#up.dst) this.destroy(false);
    });
    server.once('connect', () => {
      this.#up.dst = server;
      this.#up.kick();
    });
    server.on('close', () => this.#maybeFinished());
    this.#down = new Direction(this, 'downstream', server);
    this.#down.dst = this.client;
  }

  /** limit_data reached: what was allowed is flushed, then both ends are closed. */
  closeAfterLimit(dst: Socket): void {
    dst.end(() => this.destroy(false));
    setTimeout(() => this.destroy(false), 1000).unref();
  }

  /** Ends the connection at once: with RST on both ends when `reset`, else a plain close. */
  destroy(reset: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.#abort.abort();
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const s of [this.client, this.server]) {
      if (!s || s.destroyed) continue;
      if (reset) s.resetAndDestroy();
      else s.destroy();
    }
    this.host.connectionClosed(this);
  }

  #maybeFinished(): void {
    if (this.client.destroyed && (!this.server || this.server.destroyed)) this.destroy(false);
  }
}
