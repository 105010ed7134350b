/**
 * Waits `ms`, or less if `signal` aborts (already aborted: not at all). Resolves either way, never
 * rejects. The abort listener is removed when the wait ends, so a loop may wait on one long-lived
 * signal as often as it likes.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
