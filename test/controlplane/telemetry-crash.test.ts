import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { waitUntil } from '../support/control-plane.js';
import { FakeUpstream } from '../support/fake-upstream.js';
import { API, region, service, yamlStream } from '../support/mesh-fixtures.js';
import { startRole, type RoleProcess } from '../support/processes.js';
import { call } from '../support/proxy-harness.js';
import { get, type Continuity } from '../support/telemetry-source.js';

const SOURCE = 'proxy/frontend-1@eu-west';
/** A run-unique prefix for request ids, so that `contains=` matches only this test's records. */
const PREFIX = `crash${process.pid}x${Date.now().toString(36)}`;

interface LogsAnswer {
  records: {
    recordId: string;
    source: string;
    record: { attributes?: { key: string; value: { stringValue?: string } }[] };
  }[];
}

const attr = (r: LogsAnswer['records'][number], key: string) =>
  r.record.attributes?.find((a) => a.key === key)?.value.stringValue;

/**
 * A real `isthmus proxy` sidecar with telemetry on is killed with SIGKILL while requests stream
 * through it, then restarted on the same telemetry data dir. Every request that completed well
 * before the kill (1 s: five default fsync intervals, and a hundred access-log batch windows of
 * 10 ms, the time a record may wait in memory before it is appended) has its access-log record in a real
 * `isthmus collector` once the restarted proxy has shipped, with no seq gap and no duplicate.
 */
describe('proxy killed mid-stream with telemetry on', () => {
  let dir = '';
  let app: FakeUpstream | undefined;
  const running: RoleProcess[] = [];
  after(async () => {
    for (const p of running) await p.stop('SIGKILL');
    await app?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const start = async (args: string[]) => {
    const p = await startRole(args);
    running.push(p);
    return p;
  };

  it(
    'keeps every record written before the kill and ships it after the restart',
    { timeout: 30_000 },
    async (t) => {
      dir = await mkdtemp(path.join(tmpdir(), 'isthmus-telemetry-crash-'));
      const meshDir = path.join(dir, 'mesh');
      await mkdir(meshDir);
      // The default fsync interval (500 ms), appends written every 10 ms rather than every 100 ms:
      // so that at the kill there is nearly always something written and not yet shipped for the
      // restart to recover (with 100 ms, nothing is written in the first 100 ms after an fsync);
      // a short heartbeat so continuity is current.
      await writeFile(
        path.join(meshDir, 'mesh.yaml'),
        yamlStream(
          region('eu-west', ['eu-west-a']),
          service('frontend'),
          service('catalog'),
          `${API}
kind: TelemetryPolicy
metadata: {name: all}
spec:
  targetRef: {kind: Mesh}
  buffer: {writeDelay: 10ms}
  heartbeatInterval: 100ms`,
        ),
      );
      app = await FakeUpstream.start('catalog-app');

      const collector = await start([
        'collector',
        '--region',
        'eu-west',
        '--data-dir',
        path.join(dir, 'collector'),
        '--listen',
        '127.0.0.1:0',
      ]);
      const collectorUrl = `http://${String(collector.ready.address)}`;
      const bootstrapFile = path.join(dir, 'frontend.yaml');
      await writeFile(
        bootstrapFile,
        `apiVersion: isthmus.dev/v1alpha1
kind: ProxyBootstrap
metadata: {name: frontend-1}
spec:
  mode: sidecar
  service: frontend
  locality: eu-west/eu-west-a
  outbound: {listen: 127.0.0.1:0}
  admin: {listen: 127.0.0.1:0}
  resources: [${JSON.stringify(meshDir)}]
  endpoints:
    catalog:
      - {address: 127.0.0.1, port: ${app.port}, locality: eu-west/eu-west-a}
  telemetry: {collector: ${JSON.stringify(collectorUrl)}, dataDir: ${JSON.stringify(path.join(dir, 'telemetry'))}}
`,
      );
      const proxy = await start(['proxy', '-c', bootstrapFile]);
      const outbound = String(proxy.ready.listeners?.outbound);

      // Stream requests until the proxy goes away, recording when each one completed.
      const completedAt = new Map<string, number>();
      let stopped = false;
      const failures: string[] = [];
      const worker = async (w: number) => {
        for (let i = 0; !stopped; i++) {
          const id = `${PREFIX}-${w}-${i}`;
          try {
            const r = await call(outbound, {
              host: 'catalog',
              path: `/items/${i}`,
              headers: { 'x-request-id': id },
            });
            if (r.status === 200) completedAt.set(id, Date.now());
            else if (!stopped) failures.push(`${id}: status ${r.status} ${r.body}`);
          } catch (err) {
            // Requests in flight when the proxy is killed fail; only earlier failures count.
            if (!stopped) failures.push(`${id}: ${String(err)}`);
            return;
          }
        }
      };
      const workers = Promise.all([0, 1, 2, 3].map(worker));
      await waitUntil(
        () => completedAt.size >= 200 || failures.length > 0,
        '200 requests before the kill',
        10_000,
      );
      // Keep streaming well past 1 s so that a good share of the requests are old enough to count.
      await new Promise((r) => setTimeout(r, 1_800));
      stopped = true;
      proxy.child.kill('SIGKILL');
      const killedAt = Date.now();
      await proxy.exited;
      await workers;
      assert.deepEqual(failures, [], 'no request failed before the kill');
      assert.equal(proxy.child.signalCode, 'SIGKILL');

      const mustHave = [...completedAt].filter(([, t]) => t <= killedAt - 1_000).map(([id]) => id);
      assert.ok(mustHave.length >= 100, `enough requests completed 1 s before the kill: ${mustHave.length}`);
      assert.ok(completedAt.size > mustHave.length, 'requests were still completing near the kill');

      const logs = async () => {
        const r = await get<LogsAnswer>(collectorUrl, `/v1/logs?contains=${PREFIX}&limit=10000`);
        assert.equal(r.status, 200);
        return r.body.records.filter((x) => x.source === SOURCE);
      };
      const beforeRestart = (await logs()).length;

      // Restart on the same data dir: the log is recovered and what was not acked ships.
      const restarted = await start(['proxy', '-c', bootstrapFile]);
      await waitUntil(
        async () => {
          const l = await logs();
          const ids = new Set(l.map((x) => attr(x, 'requestId')));
          return mustHave.every((id) => ids.has(id)) ? l : undefined;
        },
        'every record completed 1 s before the kill to reach the collector',
        12_000,
        100,
      ).catch(async (err: unknown) => {
        const ids = new Set((await logs()).map((x) => attr(x, 'requestId')));
        const lost = mustHave.filter((id) => !ids.has(id));
        throw new Error(
          `${lost.length} of ${mustHave.length} records lost, e.g. ${lost.slice(0, 5).join(', ')}\n${String(err)}\nproxy stderr: ${restarted.stderr()}`,
        );
      });

      // The restart had work to do: records written and not yet acked when the proxy died (new
      // to the collector, or resent because their ack was not checkpointed yet), recovered from
      // the log and shipped. Requests streamed until the kill, so some were written since the
      // last checkpoint; the restarted proxy serves no requests and writes no metrics batch
      // within this wait, so what it ships is what it recovered.
      const admin = String(restarted.ready.listeners?.admin);
      await waitUntil(
        async () => {
          const text = (await call(admin, { path: '/metrics' })).body;
          return Number(/^isthmus_telemetry_shipped_records(?:\{[^}]*\})? (\d+)$/m.exec(text)?.[1] ?? 0) > 0;
        },
        'the restarted proxy to ship what it recovered',
        12_000,
        100,
      );
      const all = await logs();
      const recovered = all.filter((r) => completedAt.has(attr(r, 'requestId') ?? '')).length;
      t.diagnostic(
        `completed ${completedAt.size}, of which ${mustHave.length} ≥ 1 s before the kill; ` +
          `${beforeRestart} stored before the restart, ${all.length} after (${recovered} of completed requests)`,
      );

      // Each request at most once. (Record ids are the store's key, so a record resent under its
      // own id cannot show twice; one resent under a new id would, as a request logged twice.)
      const perRequest = new Map<string, number>();
      for (const r of all) {
        const id = attr(r, 'requestId');
        assert.ok(id, `a record without requestId: ${JSON.stringify(r.record)}`);
        perRequest.set(id, (perRequest.get(id) ?? 0) + 1);
      }
      const twice = [...perRequest].filter(([, n]) => n > 1);
      assert.deepEqual(twice, [], 'no request logged twice');

      // Continuity: the restarted proxy's heartbeats cover every seq the collector received.
      const c = await waitUntil(
        async () => {
          const s = (await get<Continuity>(collectorUrl, '/v1/continuity')).body.sources.find(
            (x) => x.source === SOURCE,
          );
          return s && s.emitted > 0 && s.received === s.emitted ? s : undefined;
        },
        'the collector to have received every seq the proxy emitted',
        8_000,
        100,
      ).catch(async (err: unknown) => {
        const now = (await get<Continuity>(collectorUrl, '/v1/continuity')).body;
        throw new Error(`${String(err)}\ncontinuity: ${JSON.stringify(now)}`);
      });
      assert.equal(c.gaps, 0, `no seq gap: ${JSON.stringify(c)}`);

      assert.equal(await restarted.stop(), 0, restarted.stderr());
      assert.equal(await collector.stop(), 0, collector.stderr());
    },
  );
});
