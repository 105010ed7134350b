/**
 * The second floor of the proxy benchmark: the same bare pass-through as undici-proxy.ts, on the
 * HTTP/1.1 server and client the Isthmus data plane uses (src/protocol/http1/). It measures the
 * engine alone; the distance from this row to the Isthmus row is the cost of the proxy's own
 * routing, resilience, stats and explanation headers.
 *
 * Usage: node dist/bench/peers/http1-proxy.js http://127.0.0.1:UPSTREAM_PORT
 * Prints `{"event":"ready","address":"127.0.0.1:PORT"}` once listening.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ClientPool } from '../../src/protocol/http1/client.js';
import { H1Server } from '../../src/protocol/http1/server.js';
import { HOP_BY_HOP } from './hop-by-hop.js';

const upstream = process.argv[2];
if (!upstream) {
  console.error('usage: http1-proxy.js UPSTREAM_URL');
  process.exit(2);
}
const target = new URL(upstream);

function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

const pool = new ClientPool({ connectTimeoutMs: 5000, maxConnections: 128, keepAliveMs: 60_000 });

const h1 = new H1Server({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 65_000,
  maxHeaderBytes: 16 * 1024,
  onRequest(req, res) {
    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const exchange = pool.exchange(
      target.hostname,
      Number(target.port),
      { method: req.method, path: req.url, headers: endToEnd(req.headers), body: hasBody ? req.body : null },
      {
        onHead(head) {
          res.writeHead(head.status, endToEnd(head.headers));
          return true;
        },
        onData: (chunk) => res.write(chunk),
        onEnd: () => res.end(),
        onError(_err, responded) {
          if (responded) res.destroy();
          else res.writeHead(502, { 'content-length': '0' }).end();
        },
      },
    );
    res.on('drain', () => exchange.resume());
  },
});

h1.server.listen(0, '127.0.0.1', () => {
  const { port } = h1.server.address() as AddressInfo;
  console.log(JSON.stringify({ event: 'ready', address: `127.0.0.1:${port}` }));
});

process.once('SIGTERM', () => {
  pool.destroy();
  void h1.close().finally(() => process.exit(0));
  for (const c of h1.connections) c.socket.destroy();
});
