/**
 * The floor of the proxy benchmark: the least a Node.js proxy can do. A node:http server hands
 * each request to an undici Pool and streams the response back, dropping hop-by-hop headers,
 * with no routing, policies or telemetry.
 *
 * Usage: node dist/bench/peers/undici-proxy.js http://127.0.0.1:UPSTREAM_PORT
 * Prints `{"event":"ready","address":"127.0.0.1:PORT"}` once listening.
 */
import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { HOP_BY_HOP } from './hop-by-hop.js';

const upstream = process.argv[2];
if (!upstream) {
  console.error('usage: undici-proxy.js UPSTREAM_URL');
  process.exit(2);
}

function endToEnd(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers))
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 });

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const hasBody =
    req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.stream(
    {
      path: req.url ?? '/',
      method: req.method ?? 'GET',
      headers: endToEnd(req.headers),
      body: hasBody ? req : null,
    },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, endToEnd(headers) as OutgoingHttpHeaders);
      return res;
    },
    (err) => {
      if (!err) return;
      if (res.headersSent) res.destroy(err);
      else res.writeHead(502, { 'content-length': '0' }).end();
    },
  );
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ event: 'ready', address: `127.0.0.1:${port}` }));
});

process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void pool.close().finally(() => process.exit(0));
});
