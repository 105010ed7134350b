import type { ProxyResponse } from '../../protocol/http1/server.js';
import type { ResponseStream } from './upstream.js';

/** A copy of the body kept while it streams, for a cache or a replay store. */
export interface Keep {
  /** Largest body kept, bytes; a longer one is reported as `undefined`. */
  limit: number;
  /** Called once the body ended: the whole body, or `undefined` when it was over `limit`. */
  done(body: Buffer | undefined): void;
}

/**
 * Streams an upstream body to the client with backpressure, optionally keeping a bounded copy,
 * and aborts the upstream when the client goes away mid-body.
 */
export function relay(res: ProxyResponse, body: ResponseStream, keep?: Keep, onError?: () => void): void {
  let kept: Buffer[] | undefined = keep ? [] : undefined;
  let keptBytes = 0;
  let over = false;
  const flow = body.pipe({
    onData(chunk) {
      if (kept && !over) {
        keptBytes += chunk.length;
        if (keptBytes > (keep?.limit ?? 0)) {
          over = true;
          kept = undefined;
        } else kept.push(chunk);
      }
      return res.write(chunk);
    },
    onEnd() {
      res.end();
      keep?.done(over || !kept ? undefined : Buffer.concat(kept, keptBytes));
    },
    onError() {
      onError?.();
      // The status line is gone; the only honest signal left is an aborted response.
      res.destroy();
    },
  });
  res.on('drain', () => flow.resume());
  res.once('close', () => {
    if (!res.writableFinished) flow.abort(new Error('client closed the connection'));
  });
}
