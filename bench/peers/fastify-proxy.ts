/**
 * A peer for the proxy benchmark: @fastify/http-proxy on fastify with their defaults (undici
 * pool of 128 keep-alive connections to the upstream), no logger.
 *
 * Usage: node dist/bench/peers/fastify-proxy.js http://127.0.0.1:UPSTREAM_PORT
 * Prints `{"event":"ready","address":"127.0.0.1:PORT"}` once listening.
 */
import proxy from '@fastify/http-proxy';
import Fastify from 'fastify';

const upstream = process.argv[2];
if (!upstream) {
  console.error('usage: fastify-proxy.js UPSTREAM_URL');
  process.exit(2);
}

const app = Fastify({ logger: false });
await app.register(proxy, { upstream });
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('fastify listens on no TCP port');
console.log(JSON.stringify({ event: 'ready', address: `127.0.0.1:${address.port}` }));

process.once('SIGTERM', () => {
  void app.close().finally(() => process.exit(0));
});
