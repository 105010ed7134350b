/**
 * orders: the system of record for orders (home region us-east). Every write needs an
 * `Idempotency-Key`, and the app deliberately does NOT deduplicate by it: the mesh's inbound
 * idempotent replay is what must keep a retried checkout from applying twice. The app counts
 * instead, so a drill can prove it: a key applied more than once is a duplicate side effect.
 *
 *   POST /orders   {items: [{productId, quantity}], customer?}  → 201 {order, region, zone, instance}
 *   GET  /orders?limit=N                                          → {orders, count, region, ...}
 *   GET  /orders/:id                                              → {order, region, ...}
 *   GET  /stats                                                   → {applied, duplicates, keys, ...}
 *   GET  /stats/keys                                              → {keys: {KEY: timesApplied}, ...}
 */
import {
  header,
  HttpError,
  numberOption,
  parseAppArgs,
  pathParam,
  queryInt,
  readJson,
  run,
  sendJson,
  serve,
} from './lib.js';

const USAGE = `usage: node orders.js [--listen HOST:PORT] [--region R] [--zone Z] [--instance NAME]
                       [--service NAME] [--max-orders N]`;

interface OrderItem {
  productId: string;
  quantity: number;
}

interface Order {
  id: string;
  idempotencyKey: string;
  items: OrderItem[];
  customer: string | null;
  status: 'confirmed';
  createdAt: string;
  region: string;
  instance: string;
}

/** Visible ASCII, 1–255 characters: what the proxy accepts as an Idempotency-Key. */
const KEY_PATTERN = /^[!-~]{1,255}$/;

function parseOrderBody(body: unknown): { items: OrderItem[]; customer: string | null } {
  const bad = (message: string) => new HttpError(400, 'invalid-order', message);
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw bad('the body must be a JSON object');
  const { items, customer } = body as { items?: unknown; customer?: unknown };
  if (!Array.isArray(items) || items.length === 0 || items.length > 100)
    throw bad('`items` must be a list of 1 to 100 {productId, quantity}');
  const parsed = items.map((item: unknown, i): OrderItem => {
    const { productId, quantity } = (item ?? {}) as { productId?: unknown; quantity?: unknown };
    if (
      (typeof productId !== 'string' || productId === '' || productId.length > 64) &&
      typeof productId !== 'number'
    )
      throw bad(`items[${i}].productId must be a non-empty string`);
    const q = quantity ?? 1;
    if (typeof q !== 'number' || !Number.isInteger(q) || q < 1 || q > 1000)
      throw bad(`items[${i}].quantity must be an integer from 1 to 1000`);
    return { productId: String(productId), quantity: q };
  });
  if (customer !== undefined && customer !== null && (typeof customer !== 'string' || customer.length > 128))
    throw bad('`customer` must be a string of at most 128 characters');
  return { items: parsed, customer: typeof customer === 'string' ? customer : null };
}

run(async () => {
  const options = parseAppArgs(
    process.argv.slice(2),
    { service: 'orders', port: 8082, usage: USAGE },
    {
      'max-orders': { type: 'string' },
    },
  );
  const maxOrders = Math.floor(
    numberOption(options.extra['max-orders'], 'max-orders', 100_000, 1, 10_000_000),
  );
  const where = { region: options.region, zone: options.zone, instance: options.instance };
  /** Orders by id, oldest first (a Map keeps insertion order); bounded by --max-orders. */
  const orders = new Map<string, Order>();
  /** Every key ever applied and how many times: complete, so duplicates are never undercounted. */
  const applications = new Map<string, number>();
  let applied = 0;
  let duplicates = 0;
  let sequence = 0;

  const stats = () => ({
    applied,
    duplicates,
    keys: applications.size,
    duplicateApplications: applied - applications.size,
    stored: orders.size,
    ...where,
  });

  await serve(
    options,
    async (req, res, url) => {
      const path = url.pathname;
      if (path === '/orders' && req.method === 'POST') {
        const key = header(req.headers, 'idempotency-key');
        if (key === undefined || key === '')
          throw new HttpError(400, 'missing-idempotency-key', 'POST /orders needs an Idempotency-Key header');
        if (!KEY_PATTERN.test(key))
          throw new HttpError(
            400,
            'invalid-idempotency-key',
            'Idempotency-Key must be 1 to 255 visible ASCII characters',
          );
        const { items, customer } = parseOrderBody(await readJson(req));
        // The side effect, applied every time it arrives: no deduplication here on purpose.
        const times = (applications.get(key) ?? 0) + 1;
        applications.set(key, times);
        applied++;
        if (times === 2) duplicates++;
        if (times > 1)
          process.stdout.write(
            `${JSON.stringify({ event: 'duplicate-side-effect', key, times, ...where })}\n`,
          );
        const order: Order = {
          id: `${options.instance}-${++sequence}`,
          idempotencyKey: key,
          items,
          customer,
          status: 'confirmed',
          createdAt: new Date().toISOString(),
          region: options.region,
          instance: options.instance,
        };
        orders.set(order.id, order);
        if (orders.size > maxOrders) orders.delete(orders.keys().next().value as string);
        return sendJson(
          res,
          201,
          { order, ...where },
          { location: `/orders/${encodeURIComponent(order.id)}` },
        );
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        if (path === '/orders' || path.startsWith('/orders/') || path.startsWith('/stats'))
          throw new HttpError(405, 'method-not-allowed', `${req.method} ${path} is not allowed`);
        throw new HttpError(404, 'not-found', `no route for ${req.method} ${path}`);
      }
      if (path === '/stats') return sendJson(res, 200, stats());
      if (path === '/stats/keys')
        return sendJson(res, 200, { keys: Object.fromEntries(applications), ...where });
      if (path === '/orders') {
        const limit = queryInt(url, 'limit', 50, 1, 1000);
        const recent = [...orders.values()].slice(-limit).reverse();
        return sendJson(res, 200, { orders: recent, count: orders.size, ...where });
      }
      const one = /^\/orders\/([^/]+)$/.exec(path);
      if (one) {
        const id = pathParam(one[1]);
        const order = orders.get(id);
        if (!order)
          throw new HttpError(404, 'order-not-found', `no order ${JSON.stringify(id)}`, { orderId: id });
        return sendJson(res, 200, { order, ...where });
      }
      throw new HttpError(404, 'not-found', `no route for ${req.method} ${path}`);
    },
    { ready: { maxOrders } },
  );
});
