import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { IsthmusError } from '../core/errors.js';
import { splitHostPort } from './address.js';
import { compareDiagnostics, type Diagnostic } from '../model/diagnostics.js';
import { parseSingleDocument } from '../model/load.js';
import { parseLocality, type Locality } from '../model/locality.js';
import {
  Duration,
  Int,
  Name,
  NAME_MAX_LENGTH,
  NAME_PATTERN,
  OneOf,
  Size,
  Text,
} from '../model/primitives.js';
import { API_VERSION, Metadata } from '../model/resources.js';
import { formatPath } from '../model/schema-walk.js';
import { compileValidator } from '../model/validator.js';

/**
 * The file a proxy or gateway starts from: who it is, where it listens, and where its
 * configuration comes from — either static mesh resources and endpoint lists (static mode) or a
 * zone control plane that streams snapshots (`controlPlane`). It is a local file, not a mesh
 * resource: `isthmus validate` does not read it.
 */

const LOCALITY_PATTERN = '^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:/[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)?$';
const PORT = '(?:6553[0-5]|655[0-2]\\d|65[0-4]\\d{2}|6[0-4]\\d{3}|[1-5]\\d{4}|\\d{1,4})';
const HOST_PORT_PATTERN = `^(?:\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):${PORT}$`;

const ZONE_URL_PATTERN = `^wss?://(?:\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):${PORT}(?:/[!-~]*)?$`;

/** `use: 'listen'` (default) admits port 0, a free port; `'connect'` names a peer to reach. */
const HostPort = (description: string, use: 'listen' | 'connect' = 'listen') =>
  Type.String({
    pattern: HOST_PORT_PATTERN,
    maxLength: 260,
    'x-unit': 'host-port',
    description: `${description} (HOST:PORT${use === 'listen' ? '; port 0 picks a free one' : ''})`,
  });

const Listener = (description: string) =>
  Type.Object({ listen: HostPort('Address to listen on') }, { additionalProperties: false, description });

const EndpointEntry = Type.Object(
  {
    address: Text({
      minLength: 1,
      maxLength: 253,
      pattern: '^[A-Za-z0-9.:\\-\\[\\]]+$',
      description: 'IP address or host name.',
    }),
    port: Int({ minimum: 1, maximum: 65535, description: 'Port.' }),
    locality: Text({
      pattern: LOCALITY_PATTERN,
      maxLength: 127,
      description: 'REGION/ZONE of the instance.',
    }),
    weight: Type.Optional(
      Int({ minimum: 1, maximum: 1000, default: 1, description: 'Relative weight within its locality.' }),
    ),
  },
  { additionalProperties: false, description: 'An instance of a service.' },
);

export const BootstrapSpec = Type.Object(
  {
    mode: OneOf(['sidecar', 'gateway'] as const, {
      description: '`sidecar`: beside one app instance; `gateway`: the door into a region for other regions.',
    }),
    locality: Text({
      pattern: LOCALITY_PATTERN,
      maxLength: 127,
      description: 'REGION/ZONE this process runs in.',
    }),
    service: Type.Optional(Name('The local app’s service (sidecar mode).')),
    inbound: Type.Optional(
      Type.Object(
        { listen: HostPort('Address to listen on'), app: HostPort('Address of the local app') },
        {
          additionalProperties: false,
          description: 'Inbound listener in front of the local app (sidecar mode).',
        },
      ),
    ),
    outbound: Type.Optional(
      Listener('Outbound listener for the local app: HTTP forward proxy and Host routing (sidecar mode).'),
    ),
    gateway: Type.Optional(Listener('Listener for traffic from other regions (gateway mode).')),
    admin: Listener('Admin listener: /ready, /config, /endpoints, /stats, /metrics, /degraded.'),
    resources: Type.Optional(
      Type.Array(Text({ minLength: 1, maxLength: 4096, description: 'A file or directory.' }), {
        minItems: 1,
        description:
          'Mesh resource files or directories, relative to this file (static mode; required without `controlPlane`, not allowed with it).',
      }),
    ),
    endpoints: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$' }), Type.Array(EndpointEntry), {
        additionalProperties: false,
        description:
          'Instances of each service, in every region (static mode; required without `controlPlane`, not allowed with it).',
      }),
    ),
    controlPlane: Type.Optional(
      Type.Object(
        {
          zones: Type.Array(
            Text({
              pattern: ZONE_URL_PATTERN,
              maxLength: 2048,
              description:
                'WebSocket URL of a zone control plane: ws://HOST:PORT or wss://HOST:PORT, optionally with a path.',
            }),
            {
              minItems: 1,
              maxItems: 16,
              uniqueItems: true,
              description:
                'The zone control plane(s) of this locality, as a list (one URL is a list of one); the client tries them in order.',
            },
          ),
          dataDir: Text({
            minLength: 1,
            maxLength: 4096,
            description:
              'Folder for the last-known-good snapshot (last-known-good.jsonl), relative to this file; created when missing. The proxy starts from it when the control plane is unreachable.',
          }),
        },
        {
          additionalProperties: false,
          description:
            'Take resources and endpoints from a zone control plane instead of this file. Exclusive with `resources` and `endpoints`.',
        },
      ),
    ),
    regionGateways: Type.Optional(
      Type.Record(
        Type.String({ pattern: NAME_PATTERN, maxLength: NAME_MAX_LENGTH }),
        HostPort('Address of that region’s gateway as reached from this proxy', 'connect'),
        {
          additionalProperties: false,
          description:
            'Reach another region’s gateway at this address instead of its Region’s `spec.gateway`, per region name: for a gateway reached through a NAT, a private link endpoint or a WAN emulator (sidecar mode). A region not in the mesh is ignored; the proxy’s own region is an error.',
        },
      ),
    ),
    telemetry: Type.Optional(
      Type.Object(
        {
          collector: Text({
            pattern: `^https?://(?:\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+)(?::${PORT})?(?:/[!-~]*)?$`,
            maxLength: 2048,
            description: 'Base URL of the region collector (OTLP/HTTP JSON): http://HOST:PORT.',
          }),
          dataDir: Text({
            minLength: 1,
            maxLength: 4096,
            description:
              'Folder of the telemetry write-ahead log, relative to this file; created when missing. Signals wait there while the collector is unreachable.',
          }),
        },
        {
          additionalProperties: false,
          description:
            'Request telemetry (spans, access logs, metrics) shipped to a collector. Without it, telemetry is off and costs the request path nothing.',
        },
      ),
    ),
    limits: Type.Optional(
      Type.Object(
        {
          maxRetryBodyBytes: Type.Optional(
            Size({
              default: '1MiB',
              min: '0B',
              max: '64MiB',
              description:
                'Request bodies up to this size are buffered so the request can be retried; larger ones stream and are not retried.',
            }),
          ),
          maxInflight: Type.Optional(
            Int({
              default: 10_000,
              minimum: 1,
              maximum: 1_000_000,
              description: 'Requests in flight across all listeners; beyond it requests are shed with 503.',
            }),
          ),
          headersTimeout: Type.Optional(
            Duration({
              default: '10s',
              min: '100ms',
              max: '10m',
              description: 'Time a client has to send complete request headers (slow senders get 408).',
            }),
          ),
          requestTimeout: Type.Optional(
            Duration({
              default: '5m',
              min: '1s',
              max: '24h',
              description: 'Time a client has to send a complete request, body included.',
            }),
          ),
        },
        { additionalProperties: false, description: 'Process-wide limits.' },
      ),
    ),
    seed: Type.Optional(
      Int({
        minimum: 0,
        maximum: 2 ** 31 - 1,
        description: 'Seed for balancing and jitter (replayable runs); random when absent.',
      }),
    ),
  },
  { additionalProperties: false, description: 'How a proxy or gateway starts.' },
);

export const BootstrapSchema = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION),
    kind: Type.Literal('ProxyBootstrap'),
    metadata: Metadata,
    spec: BootstrapSpec,
  },
  { additionalProperties: false },
);

export type BootstrapSpec = Static<typeof BootstrapSpec>;

export interface StaticEndpoint {
  service: string;
  address: string;
  port: number;
  locality: Locality;
  weight: number;
}

/** `spec.telemetry`, resolved. */
export interface TelemetryConfig {
  /** Base URL of the collector. */
  collector: string;
  /** Absolute path of the write-ahead log's folder. */
  dataDir: string;
}

/** Where to reach a region's gateway (`spec.regionGateways`, resolved). */
export interface GatewayAddress {
  /** Host name or IP address, IPv6 without brackets. */
  address: string;
  port: number;
}

/** `spec.controlPlane`, resolved. */
export interface ControlPlaneConfig {
  /** WebSocket URLs of the zone control plane, in the order to try them. */
  zones: string[];
  /** Absolute path of the folder holding the last-known-good snapshot. */
  dataDir: string;
}

export interface Bootstrap {
  name: string;
  file: string;
  spec: BootstrapSpec;
  locality: Locality;
  /** Resource paths resolved against the bootstrap file's folder (empty with a control plane). */
  resourcePaths: string[];
  /** Static endpoints (empty with a control plane). */
  endpoints: StaticEndpoint[];
  /** Set when configuration comes from a zone control plane rather than this file. */
  controlPlane?: ControlPlaneConfig;
  /** Set when the bootstrap turns request telemetry on. */
  telemetry?: TelemetryConfig;
  /**
   * Per region name, where this proxy reaches that region's gateway instead of the Region's
   * `spec.gateway` (empty without `spec.regionGateways`).
   */
  regionGateways: ReadonlyMap<string, GatewayAddress>;
}

let validate: ((value: unknown) => ReturnType<ReturnType<typeof compileValidator>>) | undefined;

/** Parses and validates a bootstrap file's text; every problem is a located diagnostic. */
export function parseBootstrap(
  text: string,
  file: string,
): { bootstrap?: Bootstrap; diagnostics: Diagnostic[] } {
  validate ??= compileValidator(BootstrapSchema);
  const single = parseSingleDocument(text, file, 'ProxyBootstrap');
  if (single.diagnostics) return { diagnostics: single.diagnostics };
  const { doc } = single;
  const diagnostics: Diagnostic[] = [];
  for (const p of validate(doc.value)) {
    diagnostics.push({
      severity: 'error',
      rule: p.rule,
      ...doc.locate(p.path, p.atKey),
      resource: 'ProxyBootstrap',
      path: formatPath(p.path),
      message: p.message,
      ...(p.expected !== undefined && { expected: p.expected }),
      ...(p.found !== undefined && { found: p.found }),
      ...(p.hint !== undefined && { hint: p.hint }),
    });
  }
  const schemaProblems = diagnostics.length;
  const value = doc.value as Static<typeof BootstrapSchema>;
  // Mode checks run even when the schema found problems, so one run reports everything.
  const spec = (
    value !== null && typeof value === 'object' && value.spec && typeof value.spec === 'object'
      ? value.spec
      : {}
  ) as BootstrapSpec;
  const problem = (
    fieldPath: (string | number)[],
    message: string,
    hint?: string,
    rule: Diagnostic['rule'] = 'missing-field',
  ) =>
    diagnostics.push({
      severity: 'error',
      rule,
      ...doc.locate(fieldPath, true),
      resource: 'ProxyBootstrap',
      path: formatPath(fieldPath),
      message,
      ...(hint !== undefined && { hint }),
    });
  if (spec.mode === 'sidecar') {
    if (!spec.service)
      problem(['spec'], 'a sidecar needs `service`', 'name the service of the app beside it');
    if (!spec.inbound && !spec.outbound) problem(['spec'], 'a sidecar needs `inbound`, `outbound` or both');
    if (spec.gateway)
      problem(['spec', 'gateway'], '`gateway` is for gateway mode', 'remove it or set mode: gateway');
  } else if (spec.mode === 'gateway') {
    if (!spec.gateway) problem(['spec'], 'a gateway needs a `gateway` listener');
    if (spec.inbound || spec.outbound)
      problem(
        ['spec', spec.inbound ? 'inbound' : 'outbound'],
        'inbound and outbound listeners are for sidecars',
      );
  }
  if (spec.regionGateways && typeof spec.regionGateways === 'object') {
    // A gateway never sends traffic on to another region, so it has no remote gateways to reach.
    if (spec.mode === 'gateway')
      problem(
        ['spec', 'regionGateways'],
        '`regionGateways` is for sidecars: a gateway never sends traffic to another region',
        'remove it or set mode: sidecar',
        'invalid-value',
      );
    const ownRegion = typeof spec.locality === 'string' ? spec.locality.split('/')[0] : undefined;
    for (const [region, address] of Object.entries(spec.regionGateways)) {
      if (region === ownRegion)
        problem(
          ['spec', 'regionGateways', region],
          `"${region}" is this proxy's own region (spec.locality ${spec.locality}): its instances are reached directly, never through a gateway`,
          `remove the entry for ${region}`,
          'self-reference',
        );
      else if (typeof address === 'string' && /:0+$/.test(address))
        problem(
          ['spec', 'regionGateways', region],
          `port 0 cannot be reached: "${address}" must name the port ${region}'s gateway listens on`,
          `write HOST:PORT with the gateway's port, e.g. 127.0.2.1:15443`,
          'out-of-range',
        );
    }
  }
  if (spec.controlPlane) {
    // Two sources of truth would make every answer to "which configuration runs?" ambiguous.
    for (const field of ['resources', 'endpoints'] as const)
      if (spec[field] !== undefined)
        problem(
          ['spec', field],
          `static \`${field}\` and \`controlPlane\` are exclusive: with a control plane, resources and endpoints come from its snapshots`,
          `remove \`${field}\`, or remove \`controlPlane\` to run in static mode`,
          'invalid-choice',
        );
  } else {
    for (const field of ['resources', 'endpoints'] as const)
      if (spec[field] === undefined)
        problem(
          ['spec'],
          `missing required field "${field}"`,
          `static mode needs \`resources\` and \`endpoints\`; or set \`controlPlane\` to take them from a zone control plane`,
        );
  }
  diagnostics.sort(compareDiagnostics);
  if (diagnostics.length > 0 || schemaProblems > 0) return { diagnostics };
  const base = path.dirname(file);
  return {
    diagnostics,
    bootstrap: {
      name: value.metadata.name,
      file,
      spec,
      locality: parseLocality(spec.locality),
      resourcePaths: (spec.resources ?? []).map((r) => path.resolve(base, r)),
      endpoints: Object.entries(spec.endpoints ?? {}).flatMap(([service, list]) =>
        list.map((e) => ({
          service,
          address: e.address,
          port: e.port,
          locality: parseLocality(e.locality),
          weight: e.weight ?? 1,
        })),
      ),
      ...(spec.controlPlane && {
        controlPlane: {
          zones: [...spec.controlPlane.zones],
          dataDir: path.resolve(base, spec.controlPlane.dataDir),
        },
      }),
      ...(spec.telemetry && {
        telemetry: {
          collector: spec.telemetry.collector,
          dataDir: path.resolve(base, spec.telemetry.dataDir),
        },
      }),
      regionGateways: new Map(
        Object.entries(spec.regionGateways ?? {}).map(([region, hostPort]) => {
          const { host, port } = splitHostPort(hostPort);
          return [region, { address: host, port }];
        }),
      ),
    },
  };
}

export async function loadBootstrap(
  file: string,
): Promise<{ bootstrap?: Bootstrap; diagnostics: Diagnostic[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new IsthmusError('ISTHMUS_E_IO', `cannot read bootstrap file ${file}: ${(err as Error).message}`);
  }
  return parseBootstrap(text, file);
}

export { splitHostPort };
