import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startLinkApi, type LinkApi } from '../../src/chaos/link/api.js';
import { LinkEmulator } from '../../src/chaos/link/emulator.js';
import { describeRun, isthmus } from '../support/cli.js';
import { startRole } from '../support/processes.js';

async function echoServer(): Promise<{ address: string; server: Server }> {
  const server = net.createServer((s) => s.on('error', () => undefined).pipe(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function connectOutcome(address: string): Promise<string> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve) => {
    const s = net.connect(Number(port), host, () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

interface ToxicBody {
  name: string;
  type: string;
  stream: string;
  toxicity: number;
  attributes: Record<string, number | string>;
}
interface ProxyBody {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
  toxics: ToxicBody[];
}
/** Any answer of the API, loosely: each test reads the fields its endpoint returns. */
type Body = Partial<Omit<ProxyBody, 'toxics'> & ToxicBody> & {
  toxics?: ToxicBody[];
  error?: string;
  status?: number;
  proxies?: ProxyBody[];
  removed?: number;
  length?: number;
};

describe('link emulator HTTP API (Toxiproxy-compatible)', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let emulator: LinkEmulator;
  let api: LinkApi;
  const call = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(`http://${api.address}${p}`, {
      method,
      ...(body !== undefined && {
        body: JSON.stringify(body),
        headers: { 'content-type': 'application/json' },
      }),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Body };
  };
  before(async () => {
    echo = await echoServer();
    emulator = new LinkEmulator({ seed: 1 });
    api = await startLinkApi(emulator, '127.0.0.1:0', 'test');
  });
  after(async () => {
    await api.close();
    await emulator.close();
    echo.server.close();
  });

  it('creates, lists, shows, updates and deletes proxies', async () => {
    assert.equal((await call('GET', '/version')).status, 200);
    const created = await call('POST', '/proxies', {
      name: 'p1',
      listen: '127.0.0.1:0',
      upstream: echo.address,
    });
    assert.equal(created.status, 201);
    assert.match(String(created.body.listen), /^127\.0\.0\.1:\d+$/);
    assert.equal(created.body.enabled, true);
    assert.deepEqual(created.body.toxics, []);
    const dup = await call('POST', '/proxies', { name: 'p1', listen: '127.0.0.1:0', upstream: echo.address });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.status, 409);
    assert.match(String(dup.body.error), /already exists/);
    const missing = await call('POST', '/proxies', { name: 'p2', listen: '127.0.0.1:0' });
    assert.equal(missing.status, 400);
    assert.match(String(missing.body.error), /upstream/);
    assert.deepEqual(Object.keys((await call('GET', '/proxies')).body), ['p1']);
    const off = await call('POST', '/proxies/p1', { enabled: false });
    assert.equal(off.body.enabled, false);
    assert.equal(await connectOutcome(String(created.body.listen)), 'ECONNREFUSED');
    assert.equal((await call('POST', '/proxies/p1', { enabled: true })).body.enabled, true);
    assert.equal(await connectOutcome(String(created.body.listen)), 'connected');
    assert.equal((await call('GET', '/proxies/nope')).status, 404);
    assert.equal((await call('DELETE', '/proxies/p1')).status, 204);
    assert.equal((await call('GET', '/proxies/p1')).status, 404);
  });

  it('adds, shows, updates and deletes toxics, with 400s naming the problem', async () => {
    await call('POST', '/proxies', { name: 't', listen: '127.0.0.1:0', upstream: echo.address });
    const added = await call('POST', '/proxies/t/toxics', { type: 'latency', attributes: { latency: 50 } });
    assert.equal(added.status, 200);
    assert.deepEqual(added.body, {
      name: 'latency_downstream',
      type: 'latency',
      stream: 'downstream',
      toxicity: 1,
      attributes: { latency: 50, jitter: 0, distribution: 'uniform' },
    });
    assert.equal((await call('POST', '/proxies/t/toxics', { type: 'latency' })).status, 409);
    const updated = await call('POST', '/proxies/t/toxics/latency_downstream', {
      attributes: { jitter: 10 },
    });
    assert.equal(updated.body.attributes?.latency, 50);
    assert.equal(updated.body.attributes?.jitter, 10);
    assert.equal((await call('GET', '/proxies/t/toxics')).body.length, 1);

    const unknownType = await call('POST', '/proxies/t/toxics', { type: 'latancy' });
    assert.equal(unknownType.status, 400);
    assert.match(String(unknownType.body.error), /latency.*bandwidth.*partition/s);
    const badAttr = await call('POST', '/proxies/t/toxics', { type: 'bandwidth', attributes: { rate: -1 } });
    assert.equal(badAttr.status, 400);
    assert.match(String(badAttr.body.error), /attributes\.rate/);
    const unknownAttr = await call('POST', '/proxies/t/toxics', {
      type: 'loss',
      attributes: { probabilty: 0.1 },
    });
    assert.match(String(unknownAttr.body.error), /probabilty.*did you mean "probability"/);
    const badStream = await call('POST', '/proxies/t/toxics', { type: 'timeout', stream: 'sideways' });
    assert.match(String(badStream.body.error), /stream/);
    const notJson = await fetch(`http://${api.address}/proxies/t/toxics`, { method: 'POST', body: '{nope' });
    assert.equal(notJson.status, 400);

    assert.equal((await call('DELETE', '/proxies/t/toxics/latency_downstream')).status, 204);
    assert.equal((await call('GET', '/proxies/t/toxics/latency_downstream')).status, 404);
    await call('POST', '/proxies/t/toxics', { type: 'slow_close' });
    assert.equal((await call('POST', '/reset')).status, 204);
    assert.deepEqual((await call('GET', '/proxies/t')).body.toxics, []);
    await call('DELETE', '/proxies/t');
  });

  it('populate creates, keeps identical proxies and recreates changed ones', async () => {
    const config = [
      { name: 'a', listen: '127.0.0.1:0', upstream: echo.address },
      { name: 'b', listen: '127.0.0.1:0', upstream: echo.address },
    ];
    const first = await call('POST', '/populate', config);
    assert.equal(first.status, 201);
    assert.equal(first.body.proxies?.length, 2);
    const listenA = String(first.body.proxies?.[0]?.listen);
    await call('POST', '/proxies/a/toxics', { type: 'latency', attributes: { latency: 1 } });
    const again = await call('POST', '/populate', { proxies: config });
    assert.equal(again.body.proxies?.[0]?.listen, listenA, 'identical proxy kept');
    assert.equal(again.body.proxies?.[0]?.toxics.length, 1, 'its toxics kept');
    const other = await echoServer();
    const changed = await call('POST', '/populate', [{ ...config[0], upstream: other.address }]);
    assert.equal(changed.body.proxies?.[0]?.upstream, other.address);
    assert.equal(changed.body.proxies?.[0]?.toxics.length, 0, 'a changed proxy is recreated');
    const bad = await call('POST', '/populate', [{ name: 'c', listen: 'nowhere', upstream: echo.address }]);
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.error), /proxies\[0\].*listen/);
    assert.equal((await call('GET', '/proxies/c')).status, 404, 'a bad populate changes nothing');
    other.server.close();
    await call('DELETE', '/proxies/a');
    await call('DELETE', '/proxies/b');
  });

  it('region helpers partition, isolate and heal by labels', async () => {
    const links = [
      { name: 'us-eu-data', from: 'us-east', to: 'eu-west', purpose: 'data' },
      { name: 'eu-us-data', from: 'eu-west', to: 'us-east', purpose: 'data' },
      { name: 'us-ap-data', from: 'us-east', to: 'ap-south', purpose: 'data' },
      { name: 'eu-global-control', from: 'eu-west', to: 'global', purpose: 'control' },
      { name: 'eu-global-telemetry', from: 'eu-west', to: 'global', purpose: 'telemetry' },
    ].map((l) => ({ ...l, listen: '127.0.0.1:0', upstream: echo.address }));
    await call('POST', '/populate', links);
    const toxicsOf = async () => {
      const all = (await call('GET', '/isthmus/v1/links')).body as unknown as {
        name: string;
        toxics: string[];
      }[];
      return Object.fromEntries(all.map((l) => [l.name, l.toxics.sort()]));
    };

    const oneWay = await call('POST', '/isthmus/v1/partition', {
      from: 'us-east',
      to: 'eu-west',
      direction: 'one-way',
    });
    assert.equal(oneWay.status, 200);
    let t = await toxicsOf();
    assert.deepEqual(t['us-eu-data'], ['isthmus-partition-us-east-to-eu-west-oneway-upstream']);
    assert.deepEqual(t['eu-us-data'], ['isthmus-partition-us-east-to-eu-west-oneway-downstream']);
    assert.deepEqual(t['us-ap-data'], []);

    await call('POST', '/isthmus/v1/partition', { region: 'ap-south', mode: 'reset' });
    t = await toxicsOf();
    assert.equal(t['us-ap-data']?.length, 2);

    const iso = await call('POST', '/isthmus/v1/isolate', { target: 'global', purpose: 'control' });
    assert.equal(iso.status, 200);
    t = await toxicsOf();
    assert.equal(t['eu-global-control']?.length, 2);
    assert.deepEqual(t['eu-global-telemetry'], []);

    const healed = await call('POST', '/isthmus/v1/heal', { region: 'ap-south' });
    assert.equal(healed.body.removed, 2);
    assert.deepEqual((await toxicsOf())['us-ap-data'], []);

    for (const [body, field] of [
      [{ region: 'eu-west', mood: 'grumpy' }, 'mood'],
      [{ region: 'eu-west', mode: 'drop' }, 'mode'],
      [{ region: 'eu-west', direction: 'one-way' }, 'direction'],
      [{ region: 'EU' }, 'region'],
      [{}, 'region'],
    ] as const) {
      const r = await call('POST', '/isthmus/v1/partition', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.ok(String(r.body.error).startsWith(field), `${r.body.error} names ${field}`);
    }
    assert.equal((await call('POST', '/isthmus/v1/partition', { region: 'mars' })).status, 404);
    assert.equal((await call('POST', '/isthmus/v1/isolate', { target: 'global', purpos: 'x' })).status, 400);

    await call('POST', '/isthmus/v1/heal');
    assert.ok(Object.values(await toxicsOf()).every((x) => x.length === 0));
    for (const l of links) await call('DELETE', `/proxies/${l.name}`);
  });
});

describe('isthmus link (the real CLI)', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'isthmus-link-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('starts from a YAML config, serves the API, and stops on SIGTERM', async () => {
    const echo = await echoServer();
    const file = path.join(dir, 'links.yaml');
    await writeFile(
      file,
      `- name: us-eu\n  listen: 127.0.0.1:0\n  upstream: ${echo.address}\n  from: us-east\n  to: eu-west\n  toxics:\n    - type: latency\n      attributes: {latency: 20}\n`,
    );
    const role = await startRole(['link', '--listen', '127.0.0.1:0', '--config', file, '--seed', '3']);
    try {
      assert.equal(role.ready.role, 'link');
      const proxies = role.ready.proxies as { name: string; listen: string }[];
      assert.equal(proxies[0]?.name, 'us-eu');
      const res = await fetch(`http://${String(role.ready.address)}/proxies/us-eu`);
      const body = (await res.json()) as { toxics: { type: string }[] };
      assert.equal(body.toxics[0]?.type, 'latency');
      assert.equal(await connectOutcome(proxies[0].listen), 'connected');
      assert.equal(await role.stop(), 0);
      assert.equal(await connectOutcome(proxies[0].listen), 'ECONNREFUSED');
    } finally {
      await role.stop('SIGKILL');
      echo.server.close();
    }
  });

  it('refuses a bad config naming the entry and field (exit 1)', async () => {
    const file = path.join(dir, 'bad.json');
    await writeFile(
      file,
      JSON.stringify([
        {
          name: 'x',
          upstream: '127.0.0.1:1',
          toxics: [{ type: 'latency', attributes: { latency: 'slow' } }],
        },
      ]),
    );
    const args = ['link', '--listen', '127.0.0.1:0', '--config', file];
    const r = await isthmus(args, { timeoutMs: 10_000 });
    assert.equal(r.code, 1, describeRun(args, r));
    assert.match(r.stderr, /\[0\] \(x\)\.toxics\[0\]\.attributes\.latency/);
  });
});
