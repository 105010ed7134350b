import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { seededRandom } from '../../../src/core/random.js';
import {
  LocalityBalancer,
  type BalancerEvent,
  type PickOptions,
} from '../../../src/dataplane/balancer/locality-balancer.js';
import type { Endpoint } from '../../../src/dataplane/endpoint.js';
import type { Tier } from '../../../src/model/mesh.js';
import { CALLER, defaults, endpoint, endpoints, mesh, tally } from './fixtures.js';

const DRAWS = 2000;
const plan = mesh.routingPlan(CALLER, 'catalog');

function setup(opts: { traffic?: ReturnType<typeof defaults>; seed?: number; eps?: Endpoint[] } = {}) {
  const clock = new ManualClock();
  const events: BalancerEvent[] = [];
  const balancer = new LocalityBalancer({
    locality: CALLER,
    traffic: opts.traffic ?? defaults(),
    clock,
    random: seededRandom(opts.seed ?? 42),
    onEvent: (e) => events.push(e),
  });
  const zb = endpoints('zb', 10, { region: 'eu-west', zone: 'eu-west-b' });
  const za = endpoints('za', 4, { region: 'eu-west', zone: 'eu-west-a' });
  const us = endpoint('gw-us', { region: 'us-east' }, { kind: 'gateway' });
  const ap = endpoint('gw-ap', { region: 'ap-south' }, { kind: 'gateway' });
  balancer.setEndpoints(opts.eps ?? [...zb, ...za, us, ap], plan.tiers);
  const down = (...eps: Endpoint[]) => eps.forEach((e) => balancer.setActiveHealth(e.id, false));
  const picks = (n = DRAWS, options?: PickOptions) => tally(n, () => balancer.pick(options)?.endpoint.id);
  const tiers = (n = DRAWS, options?: PickOptions) => tally(n, () => balancer.pick(options)?.priority);
  return { clock, events, balancer, zb, za, us, ap, down, picks, tiers };
}

const near = (n: number | undefined, expected: number, tolerance: number) =>
  assert.ok(n !== undefined && Math.abs(n - expected) <= tolerance, `${n} is not ${expected} ± ${tolerance}`);

describe('locality balancer: tiers and failover', () => {
  it('places endpoints into the routing plan tiers by locality', () => {
    const stray = endpoint('stray', { region: 'mars', zone: 'mars-a' });
    const { balancer, zb, za, us, ap } = setup();
    balancer.setEndpoints([...zb, ...za, us, ap, stray], plan.tiers);
    const snap = balancer.snapshot();
    assert.deepEqual(
      snap.tiers.map((t) => [t.tier, t.region, t.endpoints, t.share]),
      [
        ['zone', 'eu-west', 10, 1],
        ['region', 'eu-west', 4, 0],
        ['remote', 'us-east', 1, 0],
        ['remote', 'ap-south', 1, 0],
      ],
    );
    assert.equal(snap.endpoints.find((e) => e.id === 'stray')?.priority, null);
    assert.equal(snap.endpoints.find((e) => e.id === 'gw-us')?.priority, 2);
  });

  it('keeps all traffic in the own zone while it is healthy', () => {
    const { tiers } = setup();
    assert.deepEqual([...tiers()], [[0, DRAWS]]);
  });

  it('spills gradually: 5 healthy of 10 with factor 1.4 keeps 70% in the zone', () => {
    const { balancer, zb, down, picks } = setup();
    down(...zb.slice(0, 5));
    const shares = balancer.load().shares.map((s) => Math.round(s * 1000) / 1000);
    assert.deepEqual(shares, [0.7, 0.3, 0, 0]);
    const reasons = tally(DRAWS, () => {
      const p = balancer.pick();
      return `${p?.priority} ${p?.reason}`;
    });
    near(reasons.get('0 primary'), 1400, 80);
    near(reasons.get('1 spillover'), 600, 80);
    const counts = picks();
    for (const e of zb.slice(0, 5)) assert.equal(counts.get(e.id), undefined, `${e.id} is down`);
  });

  it('fails over zone → region → nearest remote → next remote', () => {
    const { zb, za, us, down, tiers } = setup();
    down(...zb);
    assert.deepEqual([...tiers()], [[1, DRAWS]]);
    down(...za);
    assert.deepEqual([...tiers()], [[2, DRAWS]]);
    down(us);
    assert.deepEqual([...tiers()], [[3, DRAWS]]);
  });

  it('follows the tier order it is given, so remote tiers can be re-ordered by measured RTT', () => {
    const { balancer, zb, za, down, picks } = setup();
    down(...zb, ...za);
    assert.deepEqual([...picks(200)], [['gw-us', 200]]);
    const [zone, region, usEast, apSouth] = plan.tiers as [Tier, Tier, Tier, Tier];
    balancer.setTiers([zone, region, apSouth, usEast]);
    assert.deepEqual([...picks(200)], [['gw-ap', 200]]);
    assert.equal(
      balancer.snapshot().endpoints.find((e) => e.id === 'za-0')?.health,
      'unhealthy',
      'state kept',
    );
  });

  it('panics below the threshold and then picks among all endpoints', () => {
    const { balancer, zb, za, us, ap, down, picks } = setup();
    down(...zb.slice(1), ...za, us, ap); // zone health 1/10 × 1.4 = 0.14 < 0.25
    const p = balancer.pick();
    assert.equal(p?.panic, true);
    assert.equal(p?.reason, 'panic');
    const counts = picks();
    assert.equal(counts.size, 10, 'every zone endpoint, healthy or not');
    assert.equal(balancer.snapshot().panic, true);

    const noPanic = defaults();
    noPanic.localityFailover.panicThreshold = 0;
    const other = setup({ traffic: noPanic });
    other.down(...other.zb.slice(1), ...other.za, other.us, other.ap);
    assert.deepEqual([...other.picks()], [['zb-0', DRAWS]]);
  });

  it('gives undefined when nothing is healthy and panic is off', () => {
    const traffic = defaults();
    traffic.localityFailover.panicThreshold = 0;
    const { balancer, zb, za, us, ap, down } = setup({ traffic });
    down(...zb, ...za, us, ap);
    assert.equal(balancer.pick(), undefined);
  });
});

describe('locality balancer: retries', () => {
  it('never picks an excluded endpoint and falls back to the next tier', () => {
    const { balancer, zb } = setup();
    const exclude = new Set(zb.slice(0, 9).map((e) => e.id));
    assert.deepEqual([...tally(500, () => balancer.pick({ exclude })?.endpoint.id)], [['zb-9', 500]]);
    exclude.add('zb-9');
    const p = balancer.pick({ exclude });
    assert.equal(p?.priority, 1);
    assert.equal(p?.reason, 'fallback');
    assert.match(p?.endpoint.id ?? '', /^za-/);
    const all = new Set([...exclude, 'za-0', 'za-1', 'za-2', 'za-3', 'gw-us', 'gw-ap']);
    assert.equal(balancer.pick({ exclude: all }), undefined);
  });

  it('prefers another locality: another zone, or another region', () => {
    const { balancer, za, us, ap, down } = setup();
    const otherZone = tally(500, () => balancer.pick({ preferOtherLocalityThan: CALLER })?.endpoint.id);
    assert.ok(
      [...otherZone.keys()].every((id) => id?.startsWith('za-')),
      [...otherZone.keys()].join(),
    );
    const otherRegion = balancer.pick({ preferOtherLocalityThan: { region: 'eu-west' } });
    assert.equal(otherRegion?.endpoint.id, 'gw-us');
    assert.equal(otherRegion?.reason, 'fallback');
    down(...za, us, ap);
    const stuck = balancer.pick({ preferOtherLocalityThan: CALLER });
    assert.equal(stuck?.priority, 0);
    assert.equal(stuck?.reason, 'same-locality');
  });
});

describe('locality balancer: endpoint choice and passive health', () => {
  it('prefers the faster endpoint of a tier (P2C over peak EWMA)', () => {
    const local = endpoints('z', 3, CALLER);
    const { balancer, clock, picks } = setup({ eps: local });
    const latency = [2, 10, 50];
    for (let k = 0; k < 20; k++) {
      clock.advance(10);
      local.forEach((e, i) => {
        balancer.begin(e.id);
        balancer.report(e.id, { ok: true, latencyMs: latency[i] as number });
      });
    }
    const counts = picks();
    near(counts.get('z-0'), 1333, 100);
    near(counts.get('z-1'), 667, 100);
    assert.equal(counts.get('z-2'), undefined);
  });

  it('keeps in-flight counts right and steers away from the loaded endpoint', () => {
    const local = endpoints('z', 3, CALLER);
    const { balancer, picks } = setup({ eps: local });
    const inflight = () => balancer.snapshot().endpoints.map((e) => e.inflight);
    for (let i = 0; i < 5; i++) balancer.begin('z-0');
    balancer.begin('z-1');
    assert.deepEqual(inflight(), [5, 1, 0]);
    balancer.report('z-0', { ok: true, latencyMs: 1 });
    balancer.report('z-0', { ok: false, latencyMs: 1, failure: 'reset' });
    balancer.cancel('z-0');
    balancer.cancel('z-2'); // nothing in flight: stays at 0
    assert.deepEqual(inflight(), [2, 1, 0]);
    const counts = picks();
    assert.equal(counts.get('z-0'), undefined, 'the most loaded one loses every duel');
  });

  it('ejects on consecutive failures reported by the proxy and readmits when the time is up', () => {
    const { balancer, clock, events, picks } = setup();
    for (let i = 0; i < 5; i++) {
      balancer.begin('zb-0');
      balancer.report('zb-0', { ok: false, latencyMs: 3, failure: 'connect-failure' });
    }
    const view = () => balancer.snapshot().endpoints.find((e) => e.id === 'zb-0');
    assert.equal(view()?.health, 'ejected');
    assert.equal(view()?.ejectedUntilMs, clock.now() + 10_000);
    assert.equal(view()?.ejections, 1);
    assert.deepEqual(
      events.map((e) => (e.kind === 'endpoint' ? `${e.id} ${e.health}` : e.region)),
      ['zb-0 ejected'],
    );
    assert.equal(picks().get('zb-0'), undefined);
    clock.advance(10_000);
    assert.equal(view()?.health, 'healthy');
    assert.ok((picks().get('zb-0') ?? 0) > 0);
  });

  it('judges latency within a locality: a remote gateway at 80ms is not an outlier, a slow local one is', () => {
    const local = endpoints('zb', 6, CALLER);
    const gateways = [0, 1, 2].map((i) => endpoint(`gw-us-${i}`, { region: 'us-east' }, { kind: 'gateway' }));
    const { balancer, clock } = setup({ eps: [...local, ...gateways] });
    for (let k = 0; k < 25; k++) {
      clock.advance(50);
      local.forEach((e, i) => balancer.report(e.id, { ok: true, latencyMs: i === 5 ? 90 : 2 }));
      gateways.forEach((e) => balancer.report(e.id, { ok: true, latencyMs: 80 }));
    }
    clock.advance(1_000);
    balancer.evaluate();
    const health = Object.fromEntries(balancer.snapshot().endpoints.map((e) => [e.id, e.health]));
    assert.deepEqual(health, {
      'zb-0': 'healthy',
      'zb-1': 'healthy',
      'zb-2': 'healthy',
      'zb-3': 'healthy',
      'zb-4': 'healthy',
      'zb-5': 'ejected',
      'gw-us-0': 'healthy',
      'gw-us-1': 'healthy',
      'gw-us-2': 'healthy',
    });
  });
});

describe('locality balancer: region health', () => {
  it('ejects a failing region, fails over, readmits it with a slow-start ramp', () => {
    const { balancer, clock, events, zb, za, down, picks } = setup();
    down(...zb, ...za);
    const share = () => Math.round((balancer.load().shares[2] ?? 0) * 1000) / 1000;
    for (let i = 0; i < 5; i++) {
      balancer.begin('gw-us');
      balancer.report('gw-us', { ok: false, latencyMs: 1000, failure: 'connect-failure' });
    }
    // The only gateway cannot be ejected (maxEjectedRatio) but counts as unhealthy: traffic spills.
    assert.equal(balancer.snapshot().endpoints.find((e) => e.id === 'gw-us')?.health, 'suspect');
    assert.deepEqual([...picks(200)], [['gw-ap', 200]]);

    const step = (ms: number) => {
      for (let t = 0; t < ms; t += 250) {
        clock.advance(250);
        balancer.evaluate();
      }
    };
    balancer.evaluate();
    step(750);
    assert.equal(balancer.region('us-east')?.state, 'healthy', 'not before ejectAfter');
    step(250);
    assert.equal(balancer.region('us-east')?.state, 'ejected');
    const ejected = balancer.snapshot().regions.find((r) => r.region === 'us-east');
    assert.equal(ejected?.weight, 0);
    assert.equal(ejected?.flaps, 1);
    assert.match(ejected?.reason ?? '', /^ejected: score 0\.00/);

    step(9_000); // t = 10s: the suspicion ends, the score is 1 again
    assert.equal(balancer.region('us-east')?.state, 'ejected');
    step(4_750);
    assert.equal(balancer.region('us-east')?.state, 'ejected', 'readmitAfter not yet over');
    step(250); // t = 15s
    assert.equal(balancer.region('us-east')?.state, 'recovering');
    assert.equal(share(), 0.14); // initialWeight 0.1 × factor 1.4
    clock.advance(7_500);
    assert.equal(share(), 0.77); // weight 0.55 × 1.4
    step(7_500);
    assert.equal(balancer.region('us-east')?.state, 'healthy');
    assert.equal(share(), 1);
    assert.deepEqual(
      events.flatMap((e) => (e.kind === 'region' ? [`${e.region} ${e.state}`] : [])),
      // eu-west too: all its endpoints are down in this test.
      ['eu-west ejected', 'us-east ejected', 'us-east recovering', 'us-east healthy'],
    );
  });

  it('moves traffic off an ejected local region even when endpoints are not ejected', () => {
    const { balancer, clock, zb, za } = setup();
    // Every local endpoint answers 40% of the time: no outlier within the locality, but the region is bad.
    for (let k = 0; k < 10; k++) {
      for (const e of [...zb, ...za]) {
        balancer.report(
          e.id,
          k % 5 < 2 ? { ok: true, latencyMs: 2 } : { ok: false, latencyMs: 2, failure: 'status' },
        );
      }
    }
    balancer.evaluate();
    clock.advance(1_000);
    balancer.evaluate();
    assert.equal(balancer.region('eu-west')?.state, 'ejected');
    const p = balancer.pick();
    assert.equal(p?.endpoint.id, 'gw-us');
    assert.equal(p?.reason, 'primary');
    // A retry that excluded the gateway falls back to the next region, not into the ejected one.
    const retry = balancer.pick({ exclude: new Set(['gw-us']) });
    assert.equal(retry?.endpoint.id, 'gw-ap');
    assert.equal(retry?.reason, 'fallback');
  });

  it('returns a JSON-able snapshot', () => {
    const { balancer } = setup();
    balancer.begin('zb-1');
    balancer.report('zb-1', { ok: true, latencyMs: 4 });
    balancer.evaluate();
    const snap = balancer.snapshot();
    assert.deepEqual(JSON.parse(JSON.stringify(snap)), snap);
    const zb1 = snap.endpoints.find((e) => e.id === 'zb-1');
    assert.equal(zb1?.ewmaMs, 4);
    assert.equal(zb1?.locality, 'eu-west/eu-west-b');
    assert.deepEqual(
      snap.regions.map((r) => [r.region, r.state, r.weight]),
      [
        ['eu-west', 'healthy', 1],
        ['us-east', 'healthy', 1],
        ['ap-south', 'healthy', 1],
      ],
    );
  });
});
