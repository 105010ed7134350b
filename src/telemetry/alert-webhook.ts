import type { AlertEvent } from './alerts.js';
import { sleep } from '../core/sleep.js';

/**
 * Posts alert events to `--alert-webhook` as JSON. Each post runs on its own, retried a few times
 * with doubling delays, so a slow or dead receiver never delays rule evaluation; what could not be
 * delivered is counted, not queued forever.
 */
export interface AlertWebhookOptions {
  url: string;
  attempts?: number;
  backoffBaseMs?: number;
  timeoutMs?: number;
  onFailure?: (e: AlertEvent, error: string) => void;
}

export class AlertWebhook {
  readonly #o: AlertWebhookOptions;
  readonly #abort = new AbortController();
  readonly #inflight = new Set<Promise<void>>();
  delivered = 0;
  failed = 0;

  constructor(o: AlertWebhookOptions) {
    this.#o = o;
  }

  send(e: AlertEvent): void {
    const p = this.#deliver(e).finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
  }

  /** Waits for posts under way (tests), or abandons them when `abort` (shutdown). */
  async settle(abort = false): Promise<void> {
    if (abort) this.#abort.abort();
    await Promise.all([...this.#inflight]);
  }

  async #deliver(e: AlertEvent): Promise<void> {
    const attempts = this.#o.attempts ?? 4;
    let error = '';
    for (let i = 0; i < attempts && !this.#abort.signal.aborted; i++) {
      if (i > 0) await sleep((this.#o.backoffBaseMs ?? 200) * 2 ** (i - 1), this.#abort.signal);
      try {
        const res = await fetch(this.#o.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(e),
          signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#o.timeoutMs ?? 2_000)]),
        });
        await res.arrayBuffer();
        if (res.status >= 200 && res.status < 300) {
          this.delivered++;
          return;
        }
        error = `answered ${res.status}`;
      } catch (err) {
        error = (err as Error).message;
      }
    }
    this.failed++;
    this.#o.onFailure?.(e, error);
  }
}
