/**
 * recommendations: "customers also bought" — a few product ids per product, the same answer for
 * the same product everywhere. `--fail-rate` and `--latency-ms` make it misbehave for demos and
 * drills (seeded by `--seed`, so a run can be replayed).
 *
 *   GET /recommendations/:id → {productId, items: ["17", ...], region, zone, instance}
 *
 * The shape matches the static fallback of examples/mesh/policies/traffic.yaml
 * (`{"items":[],"degraded":true}`), so callers read `items` either way.
 */
import {
  hash32,
  HttpError,
  numberOption,
  parseAppArgs,
  pathParam,
  run,
  seededRandom,
  sendJson,
  serve,
} from './lib.js';

const USAGE = `usage: node recommendations.js [--listen HOST:PORT] [--region R] [--zone Z] [--instance NAME]
                               [--service NAME] [--seed N] [--products N] [--count N]
                               [--fail-rate 0..1] [--latency-ms MS]`;

run(async () => {
  const options = parseAppArgs(
    process.argv.slice(2),
    { service: 'recommendations', port: 8084, usage: USAGE },
    {
      products: { type: 'string' },
      count: { type: 'string' },
      'fail-rate': { type: 'string' },
      'latency-ms': { type: 'string' },
    },
  );
  const products = Math.floor(numberOption(options.extra.products, 'products', 1000, 2, 1_000_000));
  const count = Math.floor(numberOption(options.extra.count, 'count', 4, 1, 20));
  const failRate = numberOption(options.extra['fail-rate'], 'fail-rate', 0, 0, 1);
  const latencyMs = numberOption(options.extra['latency-ms'], 'latency-ms', 0, 0, 60_000);
  const random = seededRandom(options.seed);
  const where = { region: options.region, zone: options.zone, instance: options.instance };
  const served = { requests: 0, failed: 0 };

  /** Deterministic: ids near in hash space, never the product itself. */
  const recommend = (id: number): string[] => {
    const out: string[] = [];
    let h = hash32(String(id));
    while (out.length < Math.min(count, products - 1)) {
      h = hash32(String(h));
      const candidate = (h % products) + 1;
      if (candidate !== id && !out.includes(String(candidate))) out.push(String(candidate));
    }
    return out;
  };

  await serve(
    options,
    async (req, res, url) => {
      if (url.pathname === '/stats' && req.method === 'GET')
        return sendJson(res, 200, { ...served, failRate, ...where });
      const m = /^\/recommendations\/([^/]+)$/.exec(url.pathname);
      if (!m) throw new HttpError(404, 'not-found', `no route for ${req.method} ${url.pathname}`);
      if (req.method !== 'GET' && req.method !== 'HEAD')
        throw new HttpError(
          405,
          'method-not-allowed',
          `${req.method} is not allowed`,
          {},
          { allow: 'GET, HEAD' },
        );
      served.requests++;
      if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
      // Drawn for every request, so the sequence of failures depends only on the seed.
      if (random() < failRate) {
        served.failed++;
        throw new HttpError(503, 'injected-failure', `failing on purpose (--fail-rate ${failRate})`);
      }
      const id = pathParam(m[1]);
      const n = /^[1-9]\d*$/.test(id) ? Number(id) : NaN;
      if (!(n <= products))
        throw new HttpError(404, 'product-not-found', `no product ${JSON.stringify(id)}`, { productId: id });
      sendJson(res, 200, { productId: id, items: recommend(n), ...where });
    },
    { ready: { failRate, latencyMs } },
  );
});
