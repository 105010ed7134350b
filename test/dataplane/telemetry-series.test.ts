import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { seededRandom } from '../../src/core/random.js';
import { Stats } from '../../src/dataplane/stats.js';
import { ProxyTelemetry } from '../../src/dataplane/telemetry.js';
import type { ProxyRequest, ProxyResponse } from '../../src/protocol/http1/server.js';
import type { MetricPoint, TelemetrySource } from '../../src/telemetry/source.js';

/** Just what ProxyTelemetry calls on its source: the metrics batches are kept. */
function fakeSource(): { source: TelemetrySource; batches: MetricPoint[][] } {
  const batches: MetricPoint[][] = [];
  const source = {
    span: () => undefined,
    accessLogRecord: () => undefined,
    metrics: (points: readonly MetricPoint[]) => batches.push([...points]),
    flush: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  } as unknown as TelemetrySource;
  return { source, batches };
}

class FakeResponse extends EventEmitter {
  statusCode = 200;
  writableFinished = true;
}

function hop(telemetry: ProxyTelemetry, service: string): void {
  const req = { method: 'GET', url: '/', headers: { host: service }, socket: {} } as unknown as ProxyRequest;
  const res = new FakeResponse();
  telemetry.begin(req, res as unknown as ProxyResponse, 'client', 'outbound', service, true);
  res.emit('close');
}

describe('proxy telemetry: hop metric series', () => {
  it('counts combinations past the bound under service and peer region "other"', async () => {
    const { source, batches } = fakeSource();
    const stats = new Stats();
    const telemetry = new ProxyTelemetry({
      source,
      clock: new ManualClock(0),
      random: seededRandom(1),
      locality: { region: 'eu-west', zone: 'eu-west-a' },
      stats,
      settings: () => undefined,
      metricsIntervalMs: 3_600_000,
    });
    try {
      // 1,000 services fill the bound; the next 500 (twice each) go to "other".
      for (let i = 0; i < 1500; i++) hop(telemetry, `svc-${i}`);
      for (let i = 1000; i < 1500; i++) hop(telemetry, `svc-${i}`);
      hop(telemetry, 'svc-0');
      telemetry.exportMetrics();
      const requests = (batches.at(-1) ?? []).filter((p) => p.name === 'isthmus.hop.requests');
      assert.equal(requests.length, 1001);
      const value = (service: string) => {
        const point = requests.find((p) => p.attributes.service === service);
        return point?.kind === 'sum' ? point.value : undefined;
      };
      assert.equal(value('other'), 1000);
      assert.equal(value('svc-0'), 2);
      assert.equal(value('svc-999'), 1);
      assert.equal(value('svc-1000'), undefined);
      assert.match(stats.prometheus(), /isthmus_hop_requests_total\{[^}]*service="other"[^}]*\} 1000/);
    } finally {
      await telemetry.close(0);
    }
  });
});
