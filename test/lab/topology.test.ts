import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { partitionToxics } from '../../src/lab/lab.js';
import {
  DEFAULT_PLACEMENT,
  linkFor,
  planLab,
  type LabLink,
  type LabTopology,
} from '../../src/lab/topology.js';

/** Every host:port a process of the plan listens on. */
function listeners(t: LabTopology): string[] {
  const out: string[] = [t.global.controlPlane, t.global.collector, t.global.linkApi, t.global.labApi];
  for (const r of t.regions) {
    out.push(r.gateway, r.gatewayAdmin, r.zoneListen, r.collector);
    for (const i of r.instances) out.push(`${i.address}:${i.appPort}`, i.inbound, i.outbound, i.admin);
  }
  for (const l of t.links) out.push(l.listen);
  return out;
}

const names = (links: readonly LabLink[]) => links.map((l) => l.name).sort();

describe('planLab: the default plan', () => {
  const t = planLab();

  it('has the three storefront regions in order, numbered from 1, subnet 0', () => {
    assert.equal(t.subnet, 0);
    assert.deepEqual(
      t.regions.map((r) => [r.name, r.index, r.zones]),
      [
        ['us-east', 1, ['us-east-a', 'us-east-b']],
        ['eu-west', 2, ['eu-west-a', 'eu-west-b']],
        ['ap-south', 3, ['ap-south-a']],
      ],
    );
  });

  it('gives each region its block: gateway .1, zone .2, collector .3', () => {
    const eu = t.regions[1]!;
    assert.equal(eu.gateway, '127.0.2.1:15443');
    assert.equal(eu.gatewayAdmin, '127.0.2.1:15000');
    assert.equal(eu.zoneListen, '127.0.2.2:7401');
    assert.equal(eu.collector, '127.0.2.3:4318');
    assert.deepEqual(t.global, {
      controlPlane: '127.0.100.1:7400',
      collector: '127.0.100.2:4318',
      linkApi: '127.0.100.3:8474',
      labApi: '127.0.100.4:7300',
    });
  });

  it('places instances as DEFAULT_PLACEMENT says, zone a from .10, zone b from .20', () => {
    for (const r of t.regions) assert.equal(r.instances.length, DEFAULT_PLACEMENT[r.name]!.length, r.name);
    const us = t.regions[0]!;
    assert.deepEqual(
      us.instances.map((i) => [i.name, i.service, i.zone, i.address, i.appPort]),
      [
        ['frontend-us-east-a-1', 'frontend', 'us-east-a', '127.0.1.10', 8080],
        ['catalog-us-east-a-1', 'catalog', 'us-east-a', '127.0.1.11', 8081],
        ['catalog-us-east-b-1', 'catalog', 'us-east-b', '127.0.1.20', 8081],
        ['orders-us-east-a-1', 'orders', 'us-east-a', '127.0.1.12', 8082],
        ['recommendations-us-east-a-1', 'recommendations', 'us-east-a', '127.0.1.13', 8084],
      ],
    );
    const catalogB = us.instances[2]!;
    assert.equal(catalogB.region, 'us-east');
    assert.equal(catalogB.inbound, '127.0.1.20:15006');
    assert.equal(catalogB.outbound, '127.0.1.20:15001');
    assert.equal(catalogB.admin, '127.0.1.20:15000');
    assert.deepEqual(
      t.regions[2]!.instances.map((i) => [i.name, i.address]),
      [['frontend-ap-south-a-1', '127.0.3.10']],
    );
  });

  it('numbers a second instance of one service in one zone -2', () => {
    const p = planLab({ regions: ['eu-west'], placement: { 'eu-west': ['catalog', 'catalog@eu-west-a'] } });
    assert.deepEqual(
      p.regions[0]!.instances.map((i) => [i.name, i.address]),
      [
        ['catalog-eu-west-a-1', '127.0.1.10'],
        ['catalog-eu-west-a-2', '127.0.1.11'],
      ],
    );
  });

  it('never gives two processes the same instance address or host:port', () => {
    const all = listeners(t);
    assert.equal(new Set(all).size, all.length, `duplicates in ${all.join(' ')}`);
    const instanceAddresses = t.regions.flatMap((r) => r.instances.map((i) => i.address));
    assert.equal(new Set(instanceAddresses).size, instanceAddresses.length);
    const instanceNames = t.regions.flatMap((r) => r.instances.map((i) => i.name));
    assert.equal(new Set(instanceNames).size, instanceNames.length);
    for (const a of all) assert.match(a, /^127\.0\.\d+\.\d+:\d+$/);
  });

  it('has a data link per ordered region pair plus control and telemetry per region', () => {
    assert.equal(t.links.length, 3 * 2 + 3 * 2);
    assert.equal(new Set(t.links.map((l) => l.name)).size, t.links.length);
    assert.deepEqual(names(t.links), [
      'ap-south>eu-west',
      'ap-south>global.control',
      'ap-south>global.telemetry',
      'ap-south>us-east',
      'eu-west>ap-south',
      'eu-west>global.control',
      'eu-west>global.telemetry',
      'eu-west>us-east',
      'us-east>ap-south',
      'us-east>eu-west',
      'us-east>global.control',
      'us-east>global.telemetry',
    ]);
  });

  it('points every link at a real listener of the plan', () => {
    const own = new Set(listeners(t).filter((a) => !t.links.some((l) => l.listen === a)));
    for (const l of t.links) assert.ok(own.has(l.upstream), `${l.name} → ${l.upstream}`);
  });

  it('lays links out at .200 of the initiating region with the WAN baseline latency', () => {
    assert.deepEqual(linkFor(t, 'us-east', 'eu-west'), {
      name: 'us-east>eu-west',
      from: 'us-east',
      to: 'eu-west',
      purpose: 'data',
      listen: '127.0.1.200:16002',
      upstream: '127.0.2.1:15443',
      latencyMs: 40,
    });
    // The table has one direction; the reverse uses it too.
    assert.deepEqual(linkFor(t, 'ap-south', 'us-east'), {
      name: 'ap-south>us-east',
      from: 'ap-south',
      to: 'us-east',
      purpose: 'data',
      listen: '127.0.3.200:16001',
      upstream: '127.0.1.1:15443',
      latencyMs: 100,
    });
    assert.deepEqual(linkFor(t, 'eu-west', 'global', 'control'), {
      name: 'eu-west>global.control',
      from: 'eu-west',
      to: 'global',
      purpose: 'control',
      listen: '127.0.2.200:17400',
      upstream: '127.0.100.1:7400',
      latencyMs: 40,
    });
    assert.deepEqual(linkFor(t, 'us-east', 'global', 'telemetry'), {
      name: 'us-east>global.telemetry',
      from: 'us-east',
      to: 'global',
      purpose: 'telemetry',
      listen: '127.0.1.200:14318',
      upstream: '127.0.100.2:4318',
      latencyMs: 5,
    });
  });

  it('linkFor throws for a link that does not exist', () => {
    assert.throws(() => linkFor(t, 'us-east', 'us-east'), /no data link us-east > us-east/);
    assert.throws(() => linkFor(t, 'us-east', 'eu-west', 'control'), /no control link us-east > eu-west/);
  });

  it('is deterministic', () => {
    assert.deepEqual(planLab(), t);
  });
});

describe('planLab: options', () => {
  it('a subnet changes only the second octet', () => {
    const base = planLab();
    const other = planLab({ subnet: 42 });
    assert.equal(other.subnet, 42);
    const swap = (s: string) => s.replace(/^127\.0\./, '127.42.');
    const b = listeners(base);
    const o = listeners(other);
    assert.equal(o.length, b.length);
    assert.deepEqual(o, b.map(swap));
    assert.deepEqual(
      other.links.map((l) => l.upstream),
      base.links.map((l) => swap(l.upstream)),
    );
    assert.equal(planLab({ subnet: 254 }).regions[0]!.gateway, '127.254.1.1:15443');
  });

  it('a subset of regions renumbers them and links only among them', () => {
    const t = planLab({ regions: ['eu-west', 'ap-south'] });
    assert.deepEqual(
      t.regions.map((r) => [r.name, r.index, r.gateway]),
      [
        ['eu-west', 1, '127.0.1.1:15443'],
        ['ap-south', 2, '127.0.2.1:15443'],
      ],
    );
    assert.deepEqual(names(t.links), [
      'ap-south>eu-west',
      'ap-south>global.control',
      'ap-south>global.telemetry',
      'eu-west>ap-south',
      'eu-west>global.control',
      'eu-west>global.telemetry',
    ]);
    const l = linkFor(t, 'eu-west', 'ap-south');
    assert.equal(l.listen, '127.0.1.200:16002');
    assert.equal(l.upstream, '127.0.2.1:15443');
    assert.equal(l.latencyMs, 60);
  });

  it('takes latencies from linkLatencyMs (missing pairs are 0) and placement from options', () => {
    const t = planLab({
      regions: ['us-east', 'ap-south'],
      linkLatencyMs: { 'ap-south>us-east': 7 },
      placement: { 'ap-south': ['catalog'] },
    });
    assert.equal(linkFor(t, 'us-east', 'ap-south').latencyMs, 7);
    assert.equal(linkFor(t, 'ap-south', 'us-east').latencyMs, 7);
    assert.equal(linkFor(t, 'us-east', 'global', 'control').latencyMs, 0);
    assert.deepEqual(t.regions[0]!.instances, []);
    assert.deepEqual(
      t.regions[1]!.instances.map((i) => [i.name, i.zone, i.address]),
      [['catalog-ap-south-a-1', 'ap-south-a', '127.0.2.10']],
    );
  });

  it('rejects bad options with a message naming the bad value', () => {
    const cases: [Parameters<typeof planLab>[0], RegExp][] = [
      [
        { regions: ['us-east', 'mars'] },
        /"mars" is not a region of the storefront \(us-east, eu-west, ap-south\)/,
      ],
      [
        { placement: { 'us-east': ['billing'] } },
        /"billing" in the placement of us-east is not a demo service/,
      ],
      [
        { placement: { 'us-east': ['catalog@us-east-c'] } },
        /"us-east-c" is not a zone of us-east \(us-east-a, us-east-b\)/,
      ],
      [{ placement: { 'ap-south': ['catalog@us-east-a'] } }, /"us-east-a" is not a zone of ap-south/],
      [
        { regions: ['eu-west', 'us-east', 'eu-west'] },
        /a region is named twice in eu-west, us-east, eu-west/,
      ],
      [{ regions: [] }, /at least one region/],
      [{ subnet: 255 }, /subnet 255 is not 0–254/],
      [{ subnet: -1 }, /subnet -1 is not 0–254/],
      [{ subnet: 1.5 }, /subnet 1.5 is not 0–254/],
      [
        { placement: { 'eu-west': Array.from({ length: 11 }, () => 'frontend') } },
        /more than 10 instances in eu-west-a/,
      ],
    ];
    for (const [options, message] of cases)
      assert.throws(
        () => planLab(options),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ISTHMUS_E_USAGE');
          assert.match(err.message, message);
          return true;
        },
        JSON.stringify(options),
      );
    // Ten in one zone is still fine.
    const ten = planLab({
      regions: ['eu-west'],
      placement: { 'eu-west': Array.from({ length: 10 }, () => 'orders') },
    });
    assert.equal(ten.regions[0]!.instances.at(-1)!.address, '127.0.1.19');
  });
});

describe('partitionToxics', () => {
  const t = planLab();
  type Out = ReturnType<typeof partitionToxics>;
  /** `proxy/stream` pairs, sorted. */
  const cuts = (out: Out) => out.map((o) => `${o.proxy}/${o.toxic.stream}`).sort();

  it('a region partition cuts both streams of every link from or to the region', () => {
    const out = partitionToxics(t.links, { type: 'partition', region: 'eu-west' }, 'f1');
    assert.deepEqual(cuts(out), [
      'ap-south>eu-west/downstream',
      'ap-south>eu-west/upstream',
      'eu-west>ap-south/downstream',
      'eu-west>ap-south/upstream',
      'eu-west>global.control/downstream',
      'eu-west>global.control/upstream',
      'eu-west>global.telemetry/downstream',
      'eu-west>global.telemetry/upstream',
      'eu-west>us-east/downstream',
      'eu-west>us-east/upstream',
      'us-east>eu-west/downstream',
      'us-east>eu-west/upstream',
    ]);
    for (const o of out)
      assert.deepEqual(o.toxic, {
        name: `fault-f1-${o.toxic.stream}`,
        type: 'partition',
        stream: o.toxic.stream,
        attributes: { mode: 'blackhole', scope: 'all' },
      });
  });

  it('a from/to blackhole both ways cuts both streams of the two links between them', () => {
    const out = partitionToxics(t.links, { type: 'partition', from: 'us-east', to: 'eu-west' }, 'x');
    assert.deepEqual(cuts(out), [
      'eu-west>us-east/downstream',
      'eu-west>us-east/upstream',
      'us-east>eu-west/downstream',
      'us-east>eu-west/upstream',
    ]);
  });

  it('a one-way A→B blackhole holds A’s bytes: upstream of A>B, downstream of B>A', () => {
    const out = partitionToxics(
      t.links,
      { type: 'partition', from: 'us-east', to: 'eu-west', direction: 'one-way', scope: 'new' },
      '7',
    );
    assert.deepEqual(
      out.map((o) => [o.proxy, o.toxic]),
      [
        [
          'us-east>eu-west',
          {
            name: 'fault-7-upstream',
            type: 'partition',
            stream: 'upstream',
            attributes: { mode: 'blackhole', scope: 'new' },
          },
        ],
        [
          'eu-west>us-east',
          {
            name: 'fault-7-downstream',
            type: 'partition',
            stream: 'downstream',
            attributes: { mode: 'blackhole', scope: 'new' },
          },
        ],
      ],
    );
  });

  it('reject and reset act on connections: only upstream toxics, on both sides’ links', () => {
    for (const mode of ['reject', 'reset'] as const) {
      const out = partitionToxics(t.links, { type: 'partition', from: 'ap-south', to: 'us-east', mode }, 'r');
      assert.deepEqual(cuts(out), ['ap-south>us-east/upstream', 'us-east>ap-south/upstream'], mode);
      for (const o of out) assert.deepEqual(o.toxic.attributes, { mode, scope: 'all' });
      const region = partitionToxics(t.links, { type: 'partition', region: 'ap-south', mode }, 'r');
      assert.deepEqual(cuts(region), [
        'ap-south>eu-west/upstream',
        'ap-south>global.control/upstream',
        'ap-south>global.telemetry/upstream',
        'ap-south>us-east/upstream',
        'eu-west>ap-south/upstream',
        'us-east>ap-south/upstream',
      ]);
    }
  });

  it('one-way reject: A’s links refuse (upstream); B’s links to A lose the answers (downstream)', () => {
    const out = partitionToxics(
      t.links,
      { type: 'partition', from: 'us-east', to: 'eu-west', mode: 'reject', direction: 'one-way' },
      'r1',
    );
    assert.deepEqual(
      out.map((o) => [o.proxy, o.toxic.name, o.toxic.stream]),
      [
        ['us-east>eu-west', 'fault-r1-upstream', 'upstream'],
        ['eu-west>us-east', 'fault-r1-downstream', 'downstream'],
      ],
    );
    // The reverse direction loses answers silently: a reset there would cut both ways.
    assert.deepEqual(out[0]?.toxic.attributes, { mode: 'reject', scope: 'all' });
    assert.deepEqual(out[1]?.toxic.attributes, { mode: 'blackhole', scope: 'all' });
    const reset = partitionToxics(
      t.links,
      { type: 'partition', from: 'us-east', to: 'eu-west', mode: 'reset', direction: 'one-way' },
      'r2',
    );
    assert.deepEqual(
      reset.map((o) => [o.proxy, o.toxic.stream, o.toxic.attributes.mode]),
      [
        ['us-east>eu-west', 'upstream', 'reset'],
        ['eu-west>us-east', 'downstream', 'blackhole'],
      ],
    );
  });

  it('a purpose filter keeps only links of that purpose', () => {
    const control = partitionToxics(
      t.links,
      { type: 'partition', region: 'us-east', purpose: 'control' },
      'p',
    );
    assert.deepEqual(cuts(control), ['us-east>global.control/downstream', 'us-east>global.control/upstream']);
    const data = partitionToxics(t.links, { type: 'partition', region: 'us-east', purpose: 'data' }, 'p');
    assert.equal(data.length, 4 * 2);
    assert.ok(data.every((o) => !o.proxy.includes('global')));
    const none = partitionToxics(
      t.links,
      { type: 'partition', from: 'us-east', to: 'eu-west', purpose: 'telemetry' },
      'p',
    );
    assert.deepEqual(none, []);
  });
});
