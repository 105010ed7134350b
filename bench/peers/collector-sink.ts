/**
 * The collector stand-in of the telemetry benchmark: answers every POST with 200 `{}` once it has
 * read the body, and counts what arrived. It stores and parses nothing, so its cost (on the load
 * generator's core, not the proxy's) stays small.
 *
 * Records are counted by the `"isthmus.seq"` attribute the telemetry source splices into every
 * exported OTLP item (span, log record, metrics batch): a byte search, no JSON parse. Compact
 * access-log bodies (`POST /v1/access-logs`) have their access-log records counted: a binary body
 * (format 4) from its batches' heads, a JSON one (formats 1 to 3) parsed.
 *
 * Usage: node dist/bench/peers/collector-sink.js
 * Prints `{"event":"ready","address":"127.0.0.1:PORT"}` once listening; `GET /count` answers the
 * counters as JSON, and they are printed as `{"event":"count",...}` on SIGTERM.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { binaryBodyRecords, isBinaryAccessLogBody } from '../../src/telemetry/access-log-binary.js';

const SEQ_MARKER = Buffer.from('"isthmus.seq"');

interface Counts {
  posts: number;
  bytes: number;
  records: number;
  /** POSTs, bytes and records by path (/v1/traces, /v1/logs, /v1/metrics, /v1/heartbeat). */
  byPath: Record<string, { posts: number; bytes: number; records: number }>;
}

const counts: Counts = { posts: 0, bytes: 0, records: 0, byPath: {} };

function countRecords(body: Buffer): number {
  let n = 0;
  for (let i = body.indexOf(SEQ_MARKER); i !== -1; i = body.indexOf(SEQ_MARKER, i + SEQ_MARKER.length)) n++;
  return n;
}

/** Access-log records of a compact body: `records` (format /1), or the records of each batch (/2). */
function countAccessLogs(body: Buffer): number {
  if (isBinaryAccessLogBody(body)) return binaryBodyRecords(body) ?? 0;
  const b = JSON.parse(body.toString('utf8')) as { records?: unknown[]; batches?: unknown[][] };
  if (b.records) return b.records.length;
  let n = 0;
  for (const batch of b.batches ?? []) n += batch.length - 1;
  return n;
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    const text = JSON.stringify(counts);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'POST') {
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      const key = (req.url ?? '/').split('?')[0] ?? '/';
      const records = key === '/v1/access-logs' ? countAccessLogs(body) : countRecords(body);
      const p = (counts.byPath[key] ??= { posts: 0, bytes: 0, records: 0 });
      counts.posts++;
      counts.bytes += body.length;
      counts.records += records;
      p.posts++;
      p.bytes += body.length;
      p.records += records;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 });
    res.end('{}');
  });
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ event: 'ready', address: `127.0.0.1:${port}` }));
});

process.once('SIGTERM', () => {
  console.log(JSON.stringify({ event: 'count', ...counts }));
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
