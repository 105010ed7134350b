import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deflateSync, gzipSync } from 'node:zlib';
import { Collector } from '../../src/controlplane/collector/collector.js';
import { get, post, TestSource, type Summary } from '../support/telemetry-source.js';

/**
 * OpenTelemetry exporters compress by default (the Collector's otlphttp exporter sends gzip):
 * gzip and deflate bodies are taken, other encodings refused with 415, broken or oversized
 * compressed bodies refused with 400 and 413, and nothing of a refused body is stored.
 */
describe('telemetry collector: compressed request bodies', () => {
  let dir = '';
  let collector: Collector;
  let url = '';

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-collector-encoding-'));
    collector = await Collector.start({
      region: 'eu-west',
      dataDir: dir,
      listen: '127.0.0.1:0',
      heartbeatIntervalMs: 2_000,
      logFieldsAllowedOut: [],
      maxBodyBytes: 64 * 1024,
    });
    url = `http://${collector.address}`;
  });
  after(async () => {
    await collector?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const stored = async () => (await get<Summary>(url, '/v1/summary')).body.stored.spans;

  it('stores gzip and deflate bodies like plain ones', async () => {
    const src = new TestSource('proxy/frontend-1@eu-west', 'eu-west');
    const gz = gzipSync(JSON.stringify(src.spans(3).body));
    let r = await post(url, '/v1/traces', gz, 'application/json', { 'content-encoding': 'gzip' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const df = deflateSync(JSON.stringify(src.spans(2).body));
    r = await post(url, '/v1/traces', df, 'application/json', { 'content-encoding': 'Deflate' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(await stored(), 5);
  });

  it('refuses unknown encodings, broken data and bodies that expand past the limit, storing nothing', async () => {
    const before = await stored();
    const src = new TestSource('proxy/frontend-2@eu-west', 'eu-west');
    const json = JSON.stringify(src.spans(2).body);
    const cases: [string, Uint8Array | string, string, number, RegExp][] = [
      ['brotli', json, 'br', 415, /content-encoding "br" is not supported/],
      ['not gzip at all', json, 'gzip', 400, /not valid gzip/],
      ['truncated gzip', gzipSync(json).subarray(0, 20), 'gzip', 400, /not valid gzip/],
      // 10 MB of spaces compress to about 10 KB: under the 64 KiB limit on the wire, far over it inflated.
      ['gzip bomb', gzipSync(Buffer.alloc(10 * 1024 * 1024, 0x20)), 'gzip', 413, /once decompressed/],
    ];
    for (const [what, body, encoding, status, message] of cases) {
      const r = await post(url, '/v1/traces', body, 'application/json', { 'content-encoding': encoding });
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      assert.match(String(r.body.message), message, what);
    }
    assert.equal(await stored(), before);
  });
});
