/**
 * Configuration text for everything the proxy benchmark starts. All of it listens on 127.0.0.1,
 * keeps connections alive on both sides, and writes pid, logs and temp files under `dir`.
 */

/** The upstream's fixed response body: 1 KiB of characters nginx needs no escaping for. */
export const BODY_BYTES = 1024;
export const BODY = 'abcdefghijklmnopqrstuvwxyz012345'.repeat(BODY_BYTES / 32);

/** The mesh service the proxies are asked for (`Host: bench`). */
export const SERVICE = 'bench';

/** The core the proxy under test owns, and the one everything else shares. */
export const PROXY_CORE = 0;
export const LOAD_CORE = 1;

// nginx closes a keep-alive connection after 1000 requests by default; a benchmark would then
// measure reconnects, on either side of the proxy.
const NGINX_COMMON = (dir: string) => `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {
  worker_connections 4096;
}`;

const NGINX_HTTP_COMMON = (dir: string) => `access_log off;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;`;

/** The upstream: nginx answering every path with the fixed 1 KiB body. */
export function upstreamNginx(dir: string, port: number): string {
  return `${NGINX_COMMON(dir)}
http {
  ${NGINX_HTTP_COMMON(dir)}
  default_type text/plain;
  server {
    listen 127.0.0.1:${port};
    location / {
      return 200 '${BODY}';
    }
  }
}
`;
}

/** nginx as a reverse proxy: one worker, keep-alive connections to the upstream. */
export function proxyNginx(dir: string, port: number, upstreamPort: number): string {
  return `${NGINX_COMMON(dir)}
http {
  ${NGINX_HTTP_COMMON(dir)}
  upstream ${SERVICE} {
    server 127.0.0.1:${upstreamPort};
    keepalive 128;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://${SERVICE};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/** HAProxy in HTTP mode, one thread, reusing server connections. */
export function haproxy(port: number, upstreamPort: number): string {
  return `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s

frontend ${SERVICE}_in
  bind 127.0.0.1:${port}
  default_backend ${SERVICE}

backend ${SERVICE}
  server upstream1 127.0.0.1:${upstreamPort}
`;
}

/** The smallest mesh a sidecar can route with: one region, one service, built-in policies. */
export function isthmusMesh(): string {
  return `apiVersion: isthmus.dev/v1alpha1
kind: Region
metadata: {name: bench}
spec:
  zones: [{name: bench-a}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Service
metadata: {name: ${SERVICE}}
spec:
  ports: [{name: http, port: 8080, protocol: http}]
`;
}

/**
 * A sidecar bootstrap with the upstream as the only endpoint of the service. Nothing is tuned:
 * retries, budgets, outlier detection, health checks, stale-if-error and request stats stay on
 * at their defaults, as a user would run it.
 */
export function isthmusBootstrap(meshDir: string, upstreamPort: number): string {
  return `apiVersion: isthmus.dev/v1alpha1
kind: ProxyBootstrap
metadata: {name: bench-sidecar}
spec:
  mode: sidecar
  service: ${SERVICE}
  locality: bench/bench-a
  outbound: {listen: "127.0.0.1:0"}
  admin: {listen: "127.0.0.1:0"}
  resources: [${JSON.stringify(meshDir)}]
  seed: 1
  endpoints:
    ${SERVICE}:
      - {address: 127.0.0.1, port: ${upstreamPort}, locality: bench/bench-a}
`;
}

/**
 * {@link isthmusBootstrap} with request telemetry on: records are written to the log in `dataDir`
 * (absolute) and shipped to `collector`. Without `telemetry`, the same text as isthmusBootstrap.
 */
export function isthmusTelemetryBootstrap(
  meshDir: string,
  upstreamPort: number,
  telemetry: { collector: string; dataDir: string } | undefined,
): string {
  const base = isthmusBootstrap(meshDir, upstreamPort);
  if (!telemetry) return base;
  return `${base}  telemetry: {collector: ${JSON.stringify(telemetry.collector)}, dataDir: ${JSON.stringify(telemetry.dataDir)}}\n`;
}

/**
 * A wrk script that prints, once the run is over, what `--latency` does not: p99.9, the error
 * counts and the bytes read, as one JSON line.
 */
export const WRK_SUMMARY_LUA = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"connectErrors":%d,"readErrors":%d,' ..
    '"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"p50Us":%d,"p99Us":%d,"p999Us":%d,' ..
    '"maxUs":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
`;
