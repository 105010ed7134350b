import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Duration, Int, Name, OneOf, Section, Text, NAME_PATTERN } from './primitives.js';
import { PartitionSettings, TelemetrySettings, TrafficSettings } from './settings.js';

/** The one API version this release reads and writes. */
export const API_VERSION = 'isthmus.dev/v1alpha1';

const Labels = Type.Record(Type.String({ maxLength: 253 }), Type.String({ maxLength: 253 }), {
  description: 'Free-form key/value pairs for people and tools; Isthmus does not interpret them.',
});

export const Metadata = Type.Object(
  {
    name: Name('Name of the resource, unique per kind: lowercase letters, digits and `-`, at most 63.'),
    labels: Type.Optional(Labels),
    annotations: Type.Optional(Labels),
  },
  { additionalProperties: false, description: 'Identity of the resource.' },
);

const ServicePort = Type.Object(
  {
    name: Name('Name of the port, unique within the service.'),
    port: Int({ minimum: 1, maximum: 65535, description: 'Port number the service instances listen on.' }),
    protocol: Type.Optional(
      OneOf(['http', 'http2', 'grpc', 'tcp'] as const, {
        default: 'http',
        description: 'Application protocol.',
      }),
    ),
  },
  { additionalProperties: false, description: 'A port of the service.' },
);

const PathMatch = Type.Object(
  {
    exact: Type.Optional(Text({ pattern: '^/', maxLength: 2048, description: 'The path equals this.' })),
    prefix: Type.Optional(
      Text({ pattern: '^/', maxLength: 2048, description: 'The path starts with this segment-wise.' }),
    ),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 1,
    description: 'Path match: exactly one of `exact` or `prefix`.',
  },
);

export const HTTP_METHODS = ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

const Route = Type.Object(
  {
    name: Name(
      'Name of the route, unique within the service; policies target it as `{kind: Route, service, name}`.',
    ),
    match: Type.Object(
      {
        methods: Type.Optional(
          Type.Array(OneOf(HTTP_METHODS, { description: 'An HTTP method.' }), {
            minItems: 1,
            uniqueItems: true,
            description: 'Methods matched; all when absent.',
          }),
        ),
        path: Type.Optional(PathMatch),
      },
      {
        additionalProperties: false,
        description: 'What requests the route matches. Routes are tried in order.',
      },
    ),
  },
  { additionalProperties: false, description: 'A named route of the service.' },
);

const ServiceSpec = Type.Object(
  {
    ports: Type.Array(ServicePort, { minItems: 1, description: 'Ports of the service.' }),
    homeRegion: Type.Optional(
      Name(
        'Region that owns the service’s writes; `strong` routes are served only there. Required by `strong`.',
      ),
    ),
    routes: Type.Optional(Type.Array(Route, { description: 'Named routes, matched in order.' })),
  },
  { additionalProperties: false, description: 'A service of the mesh.' },
);

const RegionSpec = Type.Object(
  {
    zones: Type.Array(
      Type.Object({ name: Name('Zone name, unique within the region.') }, { additionalProperties: false }),
      { minItems: 1, description: 'Zones (failure domains) of the region.' },
    ),
    gateway: Type.Optional(
      Type.Object(
        {
          address: Text({
            minLength: 1,
            maxLength: 253,
            pattern: '^[A-Za-z0-9.:\\-\\[\\]]+$',
            description: 'Host name or IP address other regions reach the gateway at.',
          }),
          port: Int({ minimum: 1, maximum: 65535, description: 'Gateway port.' }),
        },
        {
          additionalProperties: false,
          description: 'The region’s gateway: the door for traffic from other regions.',
        },
      ),
    ),
    latencyHints: Type.Optional(
      Type.Record(
        Type.String({ pattern: NAME_PATTERN }),
        Duration({ description: 'Expected round-trip time.', min: '0s', max: '10s' }),
        {
          additionalProperties: false,
          description:
            'Expected round-trip time to other regions, used to order failover until real RTT is measured.',
        },
      ),
    ),
  },
  { additionalProperties: false, description: 'A region of the mesh.' },
);

const TARGET_KINDS = ['Mesh', 'Service', 'Route'] as const;

const ServiceTargetRef = Type.Object(
  {
    kind: OneOf(TARGET_KINDS, {
      description: '`Mesh` (every service), `Service` or `Route` (a named route of a service).',
    }),
    name: Type.Optional(Name('Service name (kind Service) or route name (kind Route).')),
    service: Type.Optional(Name('Service the route belongs to (kind Route).')),
  },
  {
    additionalProperties: false,
    description: 'What the policy applies to.',
    allOf: [
      { if: { properties: { kind: { const: 'Service' } } }, then: { required: ['name'] } },
      { if: { properties: { kind: { const: 'Route' } } }, then: { required: ['service', 'name'] } },
    ],
  },
);

const RegionTargetRef = Type.Object(
  {
    kind: OneOf(['Mesh', 'Region'] as const, { description: '`Mesh` (every region) or `Region`.' }),
    name: Type.Optional(Name('Region name (kind Region).')),
  },
  {
    additionalProperties: false,
    description: 'What the policy applies to.',
    allOf: [{ if: { properties: { kind: { const: 'Region' } } }, then: { required: ['name'] } }],
  },
);

const ServiceOrMeshTargetRef = Type.Object(
  {
    kind: OneOf(['Mesh', 'Service'] as const, { description: '`Mesh` (every service) or `Service`.' }),
    name: Type.Optional(Name('Service name (kind Service).')),
  },
  {
    additionalProperties: false,
    description: 'What the policy applies to.',
    allOf: [{ if: { properties: { kind: { const: 'Service' } } }, then: { required: ['name'] } }],
  },
);

/** A policy spec: `targetRef` plus the settings fields at the same level. */
function policySpec<T extends TSchema, S extends ReturnType<typeof Section>>(
  target: T,
  settings: S,
  description: string,
) {
  return Type.Object({ targetRef: target, ...settings.properties } as { targetRef: T } & S['properties'], {
    additionalProperties: false,
    description,
  });
}

const MeshSpec = Type.Object(
  {
    defaults: Type.Optional(
      Section('Mesh-wide defaults, over the built-in ones and under every policy.', {
        traffic: TrafficSettings,
        partition: PartitionSettings,
        telemetry: TelemetrySettings,
      }),
    ),
  },
  { additionalProperties: false, description: 'Mesh-wide settings. At most one Mesh resource exists.' },
);

const ExternalServiceSpec = Type.Object(
  {
    host: Text({
      minLength: 1,
      maxLength: 253,
      pattern:
        '^(\\*\\.)?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$',
      description: 'Host name, or `*.domain` for every subdomain.',
    }),
    ports: Type.Array(Int({ minimum: 1, maximum: 65535, description: 'A port.' }), {
      minItems: 1,
      uniqueItems: true,
      description: 'Ports allowed.',
    }),
    protocol: Type.Optional(
      OneOf(['http', 'https', 'tls', 'tcp'] as const, {
        default: 'https',
        description: '`http` is proxied; `https`, `tls` and `tcp` are tunnelled with CONNECT.',
      }),
    ),
    allowedRegions: Type.Optional(
      Type.Array(Name('A region.'), {
        uniqueItems: true,
        description: 'Regions whose proxies may reach it; all when absent.',
      }),
    ),
  },
  { additionalProperties: false, description: 'An egress destination outside the mesh.' },
);

/** The spec schema of each kind. Keys are the kinds, in the order documentation lists them. */
export const SpecSchemas = {
  Mesh: MeshSpec,
  Region: RegionSpec,
  Service: ServiceSpec,
  TrafficPolicy: policySpec(
    ServiceTargetRef,
    TrafficSettings,
    'Traffic settings for the mesh, a service, or a route.',
  ),
  PartitionPolicy: policySpec(
    RegionTargetRef,
    PartitionSettings,
    'What proxies and zones do while their control plane is unreachable.',
  ),
  TelemetryPolicy: policySpec(
    ServiceOrMeshTargetRef,
    TelemetrySettings,
    'Sampling, buffering and log residency for the mesh or a service.',
  ),
  ExternalService: ExternalServiceSpec,
} as const;

export type Kind = keyof typeof SpecSchemas;
export const KINDS = Object.keys(SpecSchemas) as Kind[];

export type SpecOf<K extends Kind> = Static<(typeof SpecSchemas)[K]>;
export type Metadata = Static<typeof Metadata>;

export interface Resource<K extends Kind = Kind> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: Metadata;
  spec: SpecOf<K>;
}

export type AnyResource = { [K in Kind]: Resource<K> }[Kind];

export type ServiceTarget = SpecOf<'TrafficPolicy'>['targetRef'];

/** The envelope every document must have before its spec is looked at. */
export function resourceSchema(kind: Kind) {
  return Type.Object(
    {
      apiVersion: Type.Literal(API_VERSION, { description: 'API version of the resource.' }),
      kind: Type.Literal(kind, { description: 'Kind of the resource.' }),
      metadata: Metadata,
      spec: SpecSchemas[kind],
    },
    { additionalProperties: false, description: SpecSchemas[kind].description },
  );
}
