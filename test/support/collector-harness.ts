import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { Collector, type CollectorOptions } from '../../src/controlplane/collector/collector.js';

export interface CollectorHarness {
  /** Starts a collector in `DIR/name` (eu-west, port 0, 2 s heartbeats), over `defaults` and `options`. */
  start: (name: string, options?: Partial<CollectorOptions>) => Promise<{ c: Collector; url: string }>;
  /** Closes one before the suite ends (e.g. to restart it on the same data dir). */
  stop: (c: Collector) => Promise<void>;
}

/**
 * In-process collectors for a test suite: registers the suite's `before`/`after` hooks (a
 * temporary folder; every collector still running is closed, then the folder removed).
 */
export function collectorHarness(prefix: string, defaults: Partial<CollectorOptions> = {}): CollectorHarness {
  let dir = '';
  const running: Collector[] = [];
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), prefix));
  });
  after(async () => {
    for (const c of running.splice(0)) await c.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    start: async (name, options = {}) => {
      const c = await Collector.start({
        region: 'eu-west',
        dataDir: path.join(dir, name),
        listen: '127.0.0.1:0',
        heartbeatIntervalMs: 2_000,
        logFieldsAllowedOut: [],
        ...defaults,
        ...options,
      });
      running.push(c);
      return { c, url: `http://${c.address}` };
    },
    stop: async (c) => {
      const i = running.indexOf(c);
      if (i >= 0) running.splice(i, 1);
      await c.close();
    },
  };
}
