import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { compileValidator } from '../model/validator.js';
import { formatPath } from '../model/schema-walk.js';

/**
 * Messages of the Isthmus delivery protocol (docs/protocol.md). Each is one JSON object in one
 * WebSocket text frame, with a `type`. Every received frame is validated against these schemas
 * before anything acts on it; resources inside snapshots are validated again, fully, by the
 * receiver's resource model before they are used.
 */

/** The only protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;
/** WebSocket subprotocol token; a handshake without it is refused. */
export const SUBPROTOCOL = 'isthmus.v1';

const Str = (maxLength = 253, options: object = {}) => Type.String({ minLength: 1, maxLength, ...options });
const Int = (options: object = {}) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, ...options });
const LOCALITY = '^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:/[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)?$';
const NAME = '^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$';

/** An instance of a service as the control plane knows it. */
export const EndpointRecord = Type.Object(
  {
    service: Str(63, { pattern: NAME }),
    address: Str(253, { pattern: '^[A-Za-z0-9.:\\-\\[\\]]+$' }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    /** `region/zone`. */
    locality: Str(127, { pattern: LOCALITY }),
    weight: Type.Integer({ minimum: 1, maximum: 1000 }),
  },
  { additionalProperties: false },
);
export type EndpointRecord = Static<typeof EndpointRecord>;

const Role = Type.Union([
  Type.Literal('proxy'),
  Type.Literal('gateway'),
  Type.Literal('zone'),
  Type.Literal('cli'),
]);
export type Role = Static<typeof Role>;

/** A mesh resource; its content is validated by the resource model, not here. */
const ResourceDoc = Type.Object(
  { kind: Str(63), metadata: Type.Object({ name: Str(63) }) },
  { additionalProperties: true },
);

// ---- both directions -------------------------------------------------------------------------

const Heartbeat = Type.Object(
  {
    type: Type.Literal('heartbeat'),
    /** Sender's wall clock, ms since the epoch (for skew-tolerant staleness, never for ordering). */
    sentAtMs: Int(),
    /** Sender's current version: the client's applied one, the server's latest. */
    version: Type.Optional(Str(128)),
  },
  { additionalProperties: false },
);

const ErrorMessage = Type.Object(
  { type: Type.Literal('error'), code: Str(64), message: Str(4096) },
  { additionalProperties: false },
);

// ---- client → server -------------------------------------------------------------------------

const Hello = Type.Object(
  {
    type: Type.Literal('hello'),
    protocol: Type.Integer({ minimum: 1, maximum: 1000 }),
    node: Type.Object(
      {
        /** Stable per process instance (survives reconnects, not restarts). */
        id: Str(200),
        role: Role,
        locality: Str(127, { pattern: LOCALITY }),
        service: Type.Optional(Str(63, { pattern: NAME })),
      },
      { additionalProperties: false },
    ),
    /** The last version the client applied, so the server sends only what is newer. */
    resume: Type.Optional(Type.Object({ version: Str(128) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

const Register = Type.Object(
  { type: Type.Literal('register'), endpoint: EndpointRecord },
  { additionalProperties: false },
);

const Deregister = Type.Object(
  {
    type: Type.Literal('deregister'),
    service: Str(63, { pattern: NAME }),
    address: Str(253),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
  },
  { additionalProperties: false },
);

const Ack = Type.Object({ type: Type.Literal('ack'), version: Str(128) }, { additionalProperties: false });

const Nack = Type.Object(
  {
    type: Type.Literal('nack'),
    version: Str(128),
    reason: Str(4096),
    details: Type.Optional(Type.Array(Str(4096), { maxItems: 100 })),
  },
  { additionalProperties: false },
);

/** A zone's own inventory, pushed to global; global keeps the newest per (region, epoch). */
export const Inventory = Type.Object(
  {
    type: Type.Literal('inventory'),
    region: Str(63, { pattern: NAME }),
    /** Identity of the zone's data directory: a new epoch replaces everything from an old one. */
    epoch: Str(64),
    /** Increases with every change of the zone's inventory within an epoch. */
    revision: Int(),
    generatedAtMs: Int(),
    endpoints: Type.Array(EndpointRecord, { maxItems: 1_000_000 }),
  },
  { additionalProperties: false },
);
export type Inventory = Static<typeof Inventory>;

// ---- server → client -------------------------------------------------------------------------

const Welcome = Type.Object(
  {
    type: Type.Literal('welcome'),
    protocol: Type.Integer({ minimum: 1 }),
    server: Type.Object(
      {
        id: Str(200),
        role: Type.Union([Type.Literal('zone'), Type.Literal('global')]),
        region: Type.Optional(Str(63)),
      },
      { additionalProperties: false },
    ),
    /** Both sides send a heartbeat at least this often; 3 missed ones end the stream. */
    heartbeatIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000 }),
    /** Registrations not renewed (by any message on the stream) within this are removed. */
    leaseTtlMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 86_400_000 })),
  },
  { additionalProperties: false },
);

/** Everything a proxy or gateway runs on, from its zone. */
export const Snapshot = Type.Object(
  {
    type: Type.Literal('snapshot'),
    /** Opaque, unique per content; echoed in ack/nack and in `hello.resume`. */
    version: Str(128),
    /** Revision of the policies (global's history) the snapshot carries. */
    policyRevision: Int(),
    generatedAtMs: Int(),
    resources: Type.Array(ResourceDoc, { maxItems: 1_000_000 }),
    endpoints: Type.Array(EndpointRecord, { maxItems: 10_000_000 }),
    /** How fresh the zone's view of each region is; `ageMs` null means never heard. */
    regions: Type.Array(
      Type.Object(
        {
          region: Str(63),
          connected: Type.Boolean(),
          ageMs: Type.Union([Int(), Type.Null()]),
        },
        { additionalProperties: false },
      ),
      { maxItems: 10_000 },
    ),
  },
  { additionalProperties: false },
);
export type Snapshot = Static<typeof Snapshot>;

/**
 * The changes from the snapshot with version `base` (the last one sent to this client) to the
 * snapshot `version`. The client applies them to the snapshot it runs, which must be `base`;
 * otherwise it NACKs and the zone sends the complete snapshot.
 */
export const SnapshotDelta = Type.Object(
  {
    type: Type.Literal('snapshot-delta'),
    version: Str(128),
    base: Str(128),
    policyRevision: Int(),
    generatedAtMs: Int(),
    resources: Type.Object(
      {
        upserts: Type.Array(ResourceDoc, { maxItems: 1_000_000 }),
        /** `KIND/NAME` of removed resources. */
        deletes: Type.Array(Str(200), { maxItems: 1_000_000 }),
      },
      { additionalProperties: false },
    ),
    endpoints: Type.Object(
      {
        upserts: Type.Array(EndpointRecord, { maxItems: 10_000_000 }),
        /** `SERVICE@ADDRESS:PORT` of removed endpoints. */
        deletes: Type.Array(Str(400), { maxItems: 10_000_000 }),
      },
      { additionalProperties: false },
    ),
    regions: Type.Array(
      Type.Object(
        { region: Str(63), connected: Type.Boolean(), ageMs: Type.Union([Int(), Type.Null()]) },
        { additionalProperties: false },
      ),
      { maxItems: 10_000 },
    ),
  },
  { additionalProperties: false },
);
export type SnapshotDelta = Static<typeof SnapshotDelta>;

/** Desired state from global to a zone: a full set, or the changes since `base`. */
export const PolicyUpdate = Type.Object(
  {
    type: Type.Literal('policy'),
    revision: Int(),
    /** 0: `upserts` is the complete set (replace everything); otherwise the revision it applies on. */
    base: Int(),
    upserts: Type.Array(
      Type.Object({ key: Str(200), version: Int(), resource: ResourceDoc }, { additionalProperties: false }),
      { maxItems: 1_000_000 },
    ),
    /** Tombstones: deleted resources, with the revision that deleted them. */
    deletes: Type.Array(Type.Object({ key: Str(200), version: Int() }, { additionalProperties: false }), {
      maxItems: 1_000_000,
    }),
  },
  { additionalProperties: false },
);
export type PolicyUpdate = Static<typeof PolicyUpdate>;

/** Other regions' inventories, from global to a zone (always complete; newest wins). */
export const Inventories = Type.Object(
  {
    type: Type.Literal('inventories'),
    regions: Type.Array(
      Type.Object(
        {
          region: Str(63, { pattern: NAME }),
          epoch: Str(64),
          revision: Int(),
          generatedAtMs: Int(),
          endpoints: Type.Array(EndpointRecord, { maxItems: 1_000_000 }),
          /** Whether that zone is connected to global right now, and when global last heard it. */
          connected: Type.Boolean(),
          lastHeardAtMs: Int(),
        },
        { additionalProperties: false },
      ),
      { maxItems: 10_000 },
    ),
  },
  { additionalProperties: false },
);
export type Inventories = Static<typeof Inventories>;

const InventoryAck = Type.Object(
  { type: Type.Literal('inventory-ack'), region: Str(63), epoch: Str(64), revision: Int() },
  { additionalProperties: false },
);

// ---- the unions --------------------------------------------------------------------------------

export const ClientMessage = Type.Union([
  Hello,
  Heartbeat,
  Register,
  Deregister,
  Ack,
  Nack,
  Inventory,
  ErrorMessage,
]);
export const ServerMessage = Type.Union([
  Welcome,
  Heartbeat,
  Snapshot,
  SnapshotDelta,
  PolicyUpdate,
  Inventories,
  InventoryAck,
  ErrorMessage,
]);
export type ClientMessage = Static<typeof ClientMessage>;
export type ServerMessage = Static<typeof ServerMessage>;
export type Hello = Static<typeof Hello>;
export type Welcome = Static<typeof Welcome>;

const byType = (union: { anyOf: TSchema[] }) =>
  new Map(
    union.anyOf.map((s) => [
      (s as unknown as { properties: { type: { const: string } } }).properties.type.const,
      s,
    ]),
  );

const validators = new Map<TSchema, (value: unknown) => { path: (string | number)[]; message: string }[]>();

function validatorFor(schema: TSchema) {
  let v = validators.get(schema);
  if (!v) {
    v = compileValidator(schema);
    validators.set(schema, v);
  }
  return v;
}

export type Decoded<T> = { ok: true; message: T } | { ok: false; error: string };

function decode<T>(text: string, schemas: Map<string, TSchema>, direction: string): Decoded<T> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `not JSON: ${(err as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return { ok: false, error: 'a message must be a JSON object' };
  const type = (value as { type?: unknown }).type;
  const schema = typeof type === 'string' ? schemas.get(type) : undefined;
  if (!schema)
    return {
      ok: false,
      error: `unknown ${direction} message type ${JSON.stringify(type)}; expected one of ${[...schemas.keys()].join(', ')}`,
    };
  const problems = validatorFor(schema)(value);
  if (problems.length > 0) {
    const first = problems
      .slice(0, 3)
      .map((p) => `${formatPath(p.path) || '(message)'}: ${p.message}`)
      .join('; ');
    return { ok: false, error: `invalid "${String(type)}" message: ${first}` };
  }
  return { ok: true, message: value as T };
}

const clientTypes = byType(ClientMessage);
const serverTypes = byType(ServerMessage);

/** Parses and validates a frame sent by a client (proxy, gateway or zone). */
export function decodeClientMessage(text: string): Decoded<ClientMessage> {
  return decode(text, clientTypes, 'client');
}

/** Parses and validates a frame sent by a server (zone or global). */
export function decodeServerMessage(text: string): Decoded<ServerMessage> {
  return decode(text, serverTypes, 'server');
}
