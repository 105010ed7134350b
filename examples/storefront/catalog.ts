/**
 * catalog: product reads from a deterministic generated catalogue (the same `--seed` and
 * `--products` give the same products in every region, as replicated data would).
 *
 *   GET /products/:id          → {product, region, zone, instance}
 *   GET /products?offset&limit → {items, total, offset, limit, region, zone, instance}
 *   GET /search?q=&limit=      → {query, items, total, region, zone, instance}
 */
import {
  HttpError,
  numberOption,
  parseAppArgs,
  pathParam,
  queryInt,
  run,
  seededRandom,
  sendJson,
  serve,
} from './lib.js';

const USAGE = `usage: node catalog.js [--listen HOST:PORT] [--region R] [--zone Z] [--instance NAME]
                       [--service NAME] [--seed N] [--products N]`;

interface Product {
  id: string;
  sku: string;
  name: string;
  category: string;
  /** Price in cents. */
  priceCents: number;
  currency: 'USD';
  description: string;
}

const ADJECTIVES = [
  'sturdy',
  'compact',
  'classic',
  'bright',
  'quiet',
  'rugged',
  'smooth',
  'vintage',
  'modern',
  'tiny',
];
const NOUNS: Record<string, string[]> = {
  home: ['lamp', 'chair', 'kettle', 'rug', 'shelf'],
  outdoor: ['tent', 'lantern', 'backpack', 'hammock', 'stove'],
  office: ['desk', 'notebook', 'stapler', 'monitor', 'pen'],
  kitchen: ['pan', 'knife', 'grinder', 'teapot', 'bowl'],
};
const CATEGORIES = Object.keys(NOUNS);

/** The catalogue for a seed: ids "1".."count". */
function generateCatalogue(count: number, seed: number): Product[] {
  const random = seededRandom(seed);
  const pick = <T>(list: readonly T[]): T =>
    list[Math.min(list.length - 1, Math.floor(random() * list.length))] as T;
  const products: Product[] = [];
  for (let i = 1; i <= count; i++) {
    const category = pick(CATEGORIES);
    const adjective = pick(ADJECTIVES);
    const noun = pick(NOUNS[category] ?? ['thing']);
    const name = `${adjective[0]?.toUpperCase()}${adjective.slice(1)} ${noun}`;
    products.push({
      id: String(i),
      sku: `SKU-${String(i).padStart(6, '0')}`,
      name,
      category,
      priceCents: 199 + Math.floor(random() * 50_000),
      currency: 'USD',
      description: `A ${adjective} ${noun} for your ${category}.`,
    });
  }
  return products;
}

run(async () => {
  const options = parseAppArgs(
    process.argv.slice(2),
    { service: 'catalog', port: 8081, usage: USAGE },
    {
      products: { type: 'string' },
    },
  );
  const count = numberOption(options.extra.products, 'products', 1000, 1, 1_000_000);
  const products = generateCatalogue(Math.floor(count), options.seed);
  const where = { region: options.region, zone: options.zone, instance: options.instance };

  await serve(
    options,
    (req, res, url) => {
      const known = /^\/products(?:\/[^/]+)?$/.test(url.pathname) || url.pathname === '/search';
      if (req.method !== 'GET' && req.method !== 'HEAD')
        throw known
          ? new HttpError(
              405,
              'method-not-allowed',
              `${req.method} is not allowed: catalog is read-only`,
              {},
              {
                allow: 'GET, HEAD',
              },
            )
          : new HttpError(404, 'not-found', `no route for ${req.method} ${url.pathname}`);
      const one = /^\/products\/([^/]+)$/.exec(url.pathname);
      if (one) {
        const id = pathParam(one[1]);
        const n = /^[1-9]\d*$/.test(id) ? Number(id) : NaN;
        const product = products[n - 1];
        if (!product)
          throw new HttpError(404, 'product-not-found', `no product ${JSON.stringify(id)}`, {
            productId: id,
          });
        return sendJson(res, 200, { product, ...where });
      }
      if (url.pathname === '/products') {
        const offset = queryInt(url, 'offset', 0, 0, 1e9);
        const limit = queryInt(url, 'limit', 20, 1, 100);
        return sendJson(res, 200, {
          items: products.slice(offset, offset + limit),
          total: products.length,
          offset,
          limit,
          ...where,
        });
      }
      if (url.pathname === '/search') {
        const query = (url.searchParams.get('q') ?? '').trim().toLowerCase();
        if (query === '') throw new HttpError(400, 'missing-query', 'search needs ?q=TEXT');
        const limit = queryInt(url, 'limit', 20, 1, 100);
        const found = products.filter(
          (p) =>
            p.name.toLowerCase().includes(query) || p.category === query || p.sku.toLowerCase() === query,
        );
        return sendJson(res, 200, { query, items: found.slice(0, limit), total: found.length, ...where });
      }
      throw new HttpError(404, 'not-found', `no route for ${req.method} ${url.pathname}`);
    },
    { ready: { products: products.length } },
  );
});
