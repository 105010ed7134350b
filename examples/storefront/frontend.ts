/**
 * frontend: the storefront's pages, built from catalog, recommendations and orders — all called
 * through the sidecar (`--proxy`, Host routing). Every answer says, per downstream call, who
 * served it and how (`servedBy`, `calls`), so a load generator can watch failover happen.
 *
 *   GET  /products/:id → product page: catalog (required) + recommendations (optional)
 *   POST /checkout     → orders POST /orders with an Idempotency-Key (a strong write)
 *
 * Degradation: recommendations is optional. When it fails, or the sidecar answers from a
 * fallback, or the inbound sidecar says it is degraded (`isthmus-degraded` lists it, or
 * `isthmus-degraded-flags` has `recommendations-off`), the page is still 200 with
 * `recommendations: []` and `degraded: ["recommendations"]`. In the last case the call is not
 * even made: the sidecar's hold on a degraded destination ends by itself (10 s after the last
 * failover or fallback), and then the page calls it again.
 */
import type { IncomingMessage } from 'node:http';
import {
  type CallReport,
  type CallResult,
  header,
  headerList,
  HttpError,
  newId,
  parseAppArgs,
  pathParam,
  propagated,
  readJson,
  run,
  sendJson,
  serve,
  SidecarClient,
  skippedCall,
  UsageError,
} from './lib.js';

const USAGE = `usage: node frontend.js --proxy http://HOST:PORT [--listen HOST:PORT] [--region R] [--zone Z]
                         [--instance NAME] [--service NAME]
  --proxy  the sidecar's outbound listener (or HTTP_PROXY)`;

/** The feature flag the recommendations policy turns on while it is degraded (traffic.yaml). */
const RECOMMENDATIONS_OFF = 'recommendations-off';
/** Client-side bounds; the sidecar's deadlines (policies) normally end a call first. */
const TIMEOUT_MS = { catalog: 10_000, recommendations: 2_000, orders: 20_000 } as const;

const servedByOf = (calls: Record<string, CallReport>) =>
  Object.fromEntries(Object.entries(calls).map(([name, c]) => [name, c.servedBy]));

/** A required dependency gave no usable answer: 503 when it shed or had nothing, else 502. */
function dependencyFailed(
  dependency: string,
  result: CallResult,
  calls: Record<string, CallReport>,
): HttpError {
  const status = result.report.status === 503 ? 503 : 502;
  const retryAfter = header(result.headers, 'retry-after');
  const detail = result.body as { error?: unknown; message?: unknown } | undefined;
  return new HttpError(
    status,
    'dependency-failed',
    `${dependency} failed: ${
      result.report.status === null
        ? `no answer (${result.report.error ?? 'request failed'})`
        : `${result.report.status}${typeof detail?.message === 'string' ? ` ${detail.message}` : ''}`
    }`,
    {
      dependency,
      dependencyStatus: result.report.status,
      code: result.report.error,
      servedBy: servedByOf(calls),
      calls,
    },
    retryAfter !== undefined ? { 'retry-after': retryAfter } : {},
  );
}

/** The checkout body: `{items: [{productId, quantity}], customer?}` or `{productId, quantity?, customer?}`. */
function checkoutOrder(body: unknown): {
  items: { productId: string; quantity: number }[];
  customer?: string;
} {
  const bad = (message: string) => new HttpError(400, 'invalid-checkout', message);
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw bad('the body must be a JSON object');
  const b = body as { items?: unknown; productId?: unknown; quantity?: unknown; customer?: unknown };
  const raw =
    b.items ?? (b.productId !== undefined ? [{ productId: b.productId, quantity: b.quantity }] : undefined);
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > 100)
    throw bad('send {"productId": "42", "quantity": 1} or {"items": [{"productId": "42", "quantity": 1}]}');
  const items = raw.map((item: unknown, i) => {
    const { productId, quantity } = (item ?? {}) as { productId?: unknown; quantity?: unknown };
    if (!(
      (typeof productId === 'string' && productId !== '' && productId.length <= 64) ||
      Number.isInteger(productId)
    ))
      throw bad(`items[${i}].productId must be a product id`);
    const q = quantity ?? 1;
    if (!Number.isInteger(q) || (q as number) < 1 || (q as number) > 1000)
      throw bad(`items[${i}].quantity must be an integer from 1 to 1000`);
    return { productId: String(productId), quantity: q as number };
  });
  if (b.customer !== undefined && typeof b.customer !== 'string') throw bad('`customer` must be a string');
  return { items, ...(typeof b.customer === 'string' && { customer: b.customer }) };
}

run(async () => {
  const options = parseAppArgs(process.argv.slice(2), { service: 'frontend', port: 8080, usage: USAGE });
  if (!options.proxy)
    throw new UsageError(
      `frontend needs --proxy http://HOST:PORT (or HTTP_PROXY): the outbound listener of its sidecar\n${USAGE}`,
    );
  const sidecar = new SidecarClient(options.proxy);
  const where = {
    service: options.service,
    region: options.region,
    zone: options.zone,
    instance: options.instance,
  };

  const productPage = async (req: IncomingMessage, id: string) => {
    const forward = propagated(req.headers);
    const path = `/${encodeURIComponent(id)}`;
    // What the inbound sidecar says about our dependencies right now.
    const degradedNow = headerList(req.headers, 'isthmus-degraded');
    const flags = headerList(req.headers, 'isthmus-degraded-flags');
    const skipRecommendations = flags.includes(RECOMMENDATIONS_OFF)
      ? RECOMMENDATIONS_OFF
      : degradedNow.includes('recommendations')
        ? 'sidecar-degraded'
        : undefined;
    const [catalog, recs] = await Promise.all([
      sidecar.call('catalog', { path: `/products${path}`, headers: forward, timeoutMs: TIMEOUT_MS.catalog }),
      skipRecommendations
        ? undefined
        : sidecar.call('recommendations', {
            path: `/recommendations${path}`,
            headers: forward,
            timeoutMs: TIMEOUT_MS.recommendations,
          }),
    ]);
    const calls: Record<string, CallReport> = {
      catalog: catalog.report,
      recommendations: recs?.report ?? skippedCall(skipRecommendations ?? ''),
    };
    if (catalog.report.status === 404)
      throw new HttpError(404, 'product-not-found', `no product ${JSON.stringify(id)}`, {
        dependency: 'catalog',
        servedBy: servedByOf(calls),
        calls,
      });
    const product = (catalog.body as { product?: unknown } | undefined)?.product;
    if (catalog.report.status !== 200 || product === undefined)
      throw dependencyFailed('catalog', catalog, calls);

    const degraded: string[] = [];
    // A stale catalog answer still renders; the page says prices may be out of date.
    if (catalog.report.fallback !== null) degraded.push('catalog');
    let recommendations: string[] = [];
    const recsBody = recs?.body as { items?: unknown; degraded?: unknown } | undefined;
    if (
      recs &&
      recs.report.status === 200 &&
      Array.isArray(recsBody?.items) &&
      recsBody.items.every((i) => typeof i === 'string' || typeof i === 'number')
    ) {
      recommendations = recsBody.items.map(String);
      // The static fallback (`{"items":[],"degraded":true}`) or a stale copy: an answer, but degraded.
      if (recs.report.fallback !== null || recsBody.degraded === true) degraded.push('recommendations');
    } else degraded.push('recommendations');
    return {
      ...where,
      requestId: header(req.headers, 'x-request-id') ?? null,
      product,
      recommendations,
      degraded,
      flags,
      servedBy: servedByOf(calls),
      calls,
    };
  };

  const checkout = async (req: IncomingMessage) => {
    const order = checkoutOrder(await readJson(req));
    const incomingKey = header(req.headers, 'idempotency-key');
    // The browser's key when it sent one (its retries must map to one order), else a new one.
    const idempotencyKey = incomingKey !== undefined && incomingKey !== '' ? incomingKey : newId();
    const result = await sidecar.call('orders', {
      method: 'POST',
      path: '/orders',
      headers: { ...propagated(req.headers), 'idempotency-key': idempotencyKey },
      // Same key, same bytes: a replay of this request must match the first one exactly.
      body: JSON.stringify(order),
      timeoutMs: TIMEOUT_MS.orders,
    });
    const calls = { orders: result.report };
    const status = result.report.status;
    const body = result.body as { order?: unknown; error?: unknown; message?: unknown } | undefined;
    if (status !== null && status >= 200 && status < 300 && body?.order !== undefined)
      return {
        ...where,
        requestId: header(req.headers, 'x-request-id') ?? null,
        idempotencyKey,
        replayed: result.report.replayed,
        order: body.order,
        servedBy: servedByOf(calls),
        calls,
      };
    // orders (or its sidecar) refused this request: the caller's to fix, so pass the status on.
    if (status !== null && status >= 400 && status < 500)
      throw new HttpError(
        status,
        'dependency-rejected',
        `orders refused the order: ${typeof body?.message === 'string' ? body.message : status}`,
        {
          dependency: 'orders',
          dependencyStatus: status,
          code: result.report.error ?? body?.error ?? null,
          idempotencyKey,
          servedBy: servedByOf(calls),
          calls,
        },
      );
    const failed = dependencyFailed('orders', result, calls);
    failed.details.idempotencyKey = idempotencyKey;
    throw failed;
  };

  await serve(
    options,
    async (req, res, url) => {
      const product = /^\/products\/([^/]+)$/.exec(url.pathname);
      if (product && (req.method === 'GET' || req.method === 'HEAD'))
        return sendJson(res, 200, await productPage(req, pathParam(product[1])));
      if (url.pathname === '/checkout' && req.method === 'POST')
        return sendJson(res, 201, await checkout(req));
      if (product || url.pathname === '/checkout')
        throw new HttpError(405, 'method-not-allowed', `${req.method} ${url.pathname} is not allowed`);
      throw new HttpError(404, 'not-found', `no route for ${req.method} ${url.pathname}`);
    },
    { onStop: () => sidecar.close(), ready: { proxy: options.proxy.origin } },
  );
});
