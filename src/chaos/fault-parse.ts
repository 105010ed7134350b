import { closestMatch } from '../core/text.js';
import { parseDurationMs } from '../core/units.js';
import { FAULT_TYPES, type Fault } from './fault.js';

/**
 * Reads a fault written the way drill specs and `isthmus lab fault` write it (durations with
 * units: `latency: 300ms`), checking every field. Errors name the field: `fault.latency: ...`.
 */
export function parseFault(
  value: unknown,
  where: string,
): { ok: true; fault: Fault } | { ok: false; error: string } {
  try {
    return { ok: true, fault: read(value, where) };
  } catch (err) {
    if (err instanceof FaultError) return { ok: false, error: err.message };
    throw err;
  }
}

class FaultError extends Error {}

const FIELDS: Record<(typeof FAULT_TYPES)[number], { required: string[]; optional: string[] }> = {
  partition: { required: [], optional: ['region', 'from', 'to', 'mode', 'direction', 'scope', 'purpose'] },
  latency: { required: ['from', 'to', 'latency'], optional: ['jitter', 'distribution'] },
  loss: { required: ['from', 'to', 'probability'], optional: ['stall'] },
  bandwidth: { required: ['from', 'to', 'rate'], optional: [] },
  'region-outage': { required: ['region'], optional: [] },
  'control-plane-loss': { required: ['scope'], optional: ['region'] },
  'proxy-restart': { required: ['region', 'service'], optional: [] },
  flap: { required: ['from', 'to', 'down', 'up'], optional: ['mode'] },
};

function read(value: unknown, where: string): Fault {
  const fail = (field: string, message: string): never => {
    throw new FaultError(`${where}${field ? `.${field}` : ''}: ${message}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return fail('', 'expected a mapping with a `type`');
  const v = value as Record<string, unknown>;
  const type = v.type;
  if (typeof type !== 'string' || !(FAULT_TYPES as readonly string[]).includes(type)) {
    const hint = typeof type === 'string' ? closestMatch(type, FAULT_TYPES) : undefined;
    return fail(
      'type',
      `expected one of ${FAULT_TYPES.join(', ')}${hint !== undefined ? ` (did you mean "${hint}"?)` : ''}`,
    );
  }
  const t = type as (typeof FAULT_TYPES)[number];
  const known = new Set(['type', ...FIELDS[t].required, ...FIELDS[t].optional]);
  for (const k of Object.keys(v))
    if (!known.has(k)) fail(k, `not a field of a ${t} fault (fields: ${[...known].join(', ')})`);
  for (const k of FIELDS[t].required) if (v[k] === undefined) fail(k, `a ${t} fault needs it`);
  const name = (k: string): string | undefined => {
    const x = v[k];
    if (x === undefined) return undefined;
    if (typeof x !== 'string' || !/^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/.test(x))
      fail(k, 'expected a region or service name');
    return x as string;
  };
  const oneOf = <T extends string>(k: string, options: readonly T[]): T | undefined => {
    const x = v[k];
    if (x === undefined) return undefined;
    if (typeof x !== 'string' || !options.includes(x as T)) fail(k, `expected one of ${options.join(', ')}`);
    return x as T;
  };
  const ms = (k: string): number | undefined => {
    const x = v[k];
    if (x === undefined) return undefined;
    if (typeof x !== 'string') return fail(k, 'expected a duration with a unit, e.g. 300ms');
    try {
      return parseDurationMs(x);
    } catch (err) {
      return fail(k, (err as Error).message);
    }
  };
  const num = (k: string, min: number, max: number): number => {
    const x = v[k];
    if (typeof x !== 'number' || !Number.isFinite(x) || x < min || x > max)
      fail(k, `expected a number from ${min} to ${max}`);
    return x as number;
  };
  const pair = () => {
    const from = name('from') as string;
    const to = name('to') as string;
    if (from === to) fail('to', 'must differ from `from`');
    return { from, to };
  };
  const mode = () => oneOf('mode', ['blackhole', 'reject', 'reset'] as const);
  switch (t) {
    case 'partition': {
      const region = name('region');
      const from = name('from');
      const to = name('to');
      if (region !== undefined && (from !== undefined || to !== undefined))
        fail('region', 'give either `region` or `from`/`to`, not both');
      if (region === undefined && (from === undefined || to === undefined))
        fail('', 'a partition needs `region`, or both `from` and `to`');
      if (from !== undefined && from === to) fail('to', 'must differ from `from`');
      const m = mode();
      const direction = oneOf('direction', ['both', 'one-way'] as const);
      const scope = oneOf('scope', ['new', 'all'] as const);
      const purpose = oneOf('purpose', ['data', 'control', 'telemetry'] as const);
      return {
        type: 'partition',
        ...(region !== undefined && { region }),
        ...(from !== undefined && { from }),
        ...(to !== undefined && { to }),
        ...(m !== undefined && { mode: m }),
        ...(direction !== undefined && { direction }),
        ...(scope !== undefined && { scope }),
        ...(purpose !== undefined && { purpose }),
      };
    }
    case 'latency': {
      const jitterMs = ms('jitter');
      const distribution = oneOf('distribution', ['uniform', 'normal', 'pareto'] as const);
      return {
        type: 'latency',
        ...pair(),
        latencyMs: ms('latency') as number,
        ...(jitterMs !== undefined && { jitterMs }),
        ...(distribution !== undefined && { distribution }),
      };
    }
    case 'loss': {
      const stallMs = ms('stall');
      return {
        type: 'loss',
        ...pair(),
        probability: num('probability', 0, 1),
        ...(stallMs !== undefined && { stallMs }),
      };
    }
    case 'bandwidth':
      return { type: 'bandwidth', ...pair(), rate: Math.round(num('rate', 1, 10_000_000)) };
    case 'region-outage':
      return { type: 'region-outage', region: name('region') as string };
    case 'control-plane-loss': {
      const scope = oneOf('scope', ['global', 'zone'] as const) as 'global' | 'zone';
      const region = name('region');
      if (scope === 'zone' && region === undefined)
        fail('region', 'a zone control-plane loss needs the region');
      if (scope === 'global' && region !== undefined) fail('region', 'only with scope: zone');
      return { type: 'control-plane-loss', scope, ...(region !== undefined && { region }) };
    }
    case 'proxy-restart':
      return { type: 'proxy-restart', region: name('region') as string, service: name('service') as string };
    case 'flap': {
      const m = mode();
      const downMs = ms('down') as number;
      const upMs = ms('up') as number;
      if (downMs < 100) fail('down', 'at least 100ms');
      if (upMs < 100) fail('up', 'at least 100ms');
      return { type: 'flap', ...pair(), ...(m !== undefined && { mode: m }), downMs, upMs };
    }
  }
}
