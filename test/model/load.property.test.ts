import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseAllDocuments, stringify } from 'yaml';
import type { Diagnostic } from '../../src/model/diagnostics.js';
import { loadText, type LoadResult } from '../../src/model/load.js';
import { API_VERSION, KINDS } from '../../src/model/resources.js';
import { hasPath, parseFieldPath, textAt } from '../support/yaml-doc.js';

const FILE = 'fuzz.yaml';

/** Loads `text`, failing the property (with the input shown) if the loader throws. */
function load(text: string): LoadResult {
  try {
    return loadText(text, FILE);
  } catch (err) {
    assert.fail(
      `loadText threw on ${JSON.stringify(text)}: ${err instanceof Error ? err.stack : String(err)}`,
    );
  }
}

/** Invariants every load result has, whatever the input. */
function checkWellFormed(text: string, result: LoadResult): void {
  const where = () =>
    `\ninput: ${JSON.stringify(text)}\ndiagnostics: ${JSON.stringify(result.diagnostics, null, 1)}`;
  assert.deepEqual(result.files, [FILE]);
  for (const d of result.diagnostics) {
    assert.ok(d.severity === 'error' || d.severity === 'warning', `severity ${String(d.severity)}${where()}`);
    assert.ok(
      typeof d.rule === 'string' && /^[a-z][a-z-]*$/.test(d.rule),
      `rule ${String(d.rule)}${where()}`,
    );
    assert.equal(d.file, FILE);
    assert.ok(Number.isInteger(d.line) && d.line >= 1, `line ${d.line}${where()}`);
    assert.ok(Number.isInteger(d.col) && d.col >= 1, `col ${d.col}${where()}`);
    assert.ok(
      typeof d.message === 'string' && d.message.trim() !== '',
      `message ${JSON.stringify(d.message)}${where()}`,
    );
    // The position is inside the text (or just past the end of a line).
    assert.ok(
      textAt(text, d.line, d.col) !== undefined,
      `position ${d.line}:${d.col} is outside the text${where()}`,
    );
  }
  for (const r of result.resources) {
    assert.equal(r.resource.apiVersion, API_VERSION);
    assert.ok((KINDS as string[]).includes(r.resource.kind), `resource of kind ${String(r.resource.kind)}`);
    assert.equal(typeof r.resource.metadata.name, 'string');
  }
  // A file of one document yields a resource or errors, never both.
  const docs = parseAllDocuments(text, { version: '1.2' });
  if (Array.isArray(docs) && docs.length === 1 && result.diagnostics.some((d) => d.severity === 'error')) {
    assert.deepEqual(result.resources, [], `a document with errors loaded${where()}`);
  }
}

/**
 * The loader's view of `text` when it is one well-formed document that is a mapping with the
 * right apiVersion and a known kind, i.e. one whose problems can only come from the schema.
 */
function schemaLevelValue(text: string): Record<string, unknown> | undefined {
  const docs = parseAllDocuments(text, { uniqueKeys: true, strict: true, version: '1.2' });
  if (!Array.isArray(docs) || docs.length !== 1) return undefined;
  const doc = docs[0];
  if (!doc || doc.errors.length > 0 || doc.warnings.length > 0) return undefined;
  const value: unknown = doc.toJS({ maxAliasCount: 100 });
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const record = value as Record<string, unknown>;
  if (record.apiVersion !== API_VERSION || !(KINDS as unknown[]).includes(record.kind)) return undefined;
  return record;
}

/** Schema-level diagnostics name a field, and that field is in the document (or is missing from a parent that is). */
function checkSchemaPaths(
  text: string,
  value: Record<string, unknown>,
  diagnostics: readonly Diagnostic[],
): void {
  for (const d of diagnostics) {
    const where = `\ninput:\n${text}\ndiagnostic: ${JSON.stringify(d)}`;
    assert.ok(d.path !== undefined && d.path !== '', `schema-level diagnostic without a path${where}`);
    const segs = parseFieldPath(d.path);
    assert.ok(segs.length > 0, where);
    if (d.rule === 'missing-field') {
      assert.ok(
        hasPath(value, segs.slice(0, -1)),
        `parent of a missing field is not in the document${where}`,
      );
      assert.ok(!hasPath(value, segs), `"missing" field is in the document${where}`);
    } else {
      assert.ok(hasPath(value, segs), `path is not in the document${where}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/** Fragments that exercise YAML's trickier corners: flow, anchors, tags, block scalars, markers. */
const YAML_TOKENS = [
  'apiVersion: isthmus.dev/v1alpha1\n',
  'kind: TrafficPolicy\n',
  'kind: Region\n',
  'metadata:\n  name: p\n',
  'spec:\n',
  '  targetRef: {kind: Mesh}\n',
  '  retries:\n    maxAttempts: 3\n',
  'retries',
  'perTry',
  '\n',
  ' ',
  '  ',
  '- ',
  ': ',
  ':',
  '{',
  '}',
  '[',
  ']',
  ', ',
  '"',
  "'",
  '# c',
  '&a ',
  '*a',
  '*b',
  '!!set ',
  '!!omap ',
  '!!binary ',
  '!!timestamp ',
  '!!str ',
  '!!int ',
  '!x ',
  '---\n',
  '...\n',
  '? ',
  '|\n',
  '>-\n',
  '\t',
  '%YAML 1.2\n',
  '%TAG ! tag:x,2024:\n',
  '<<: ',
  '250',
  '250ms',
  '2h',
  '20',
  '.nan',
  '-.inf',
  '0x1F',
  'null',
  '~',
  'yes',
  '\r\n',
  '\r',
  '\uFEFF',
  '😀',
  '\u0000',
];
const yamlish = fc.array(fc.constantFrom(...YAML_TOKENS), { maxLength: 40 }).map((parts) => parts.join(''));

const collectionStyle = fc.constantFrom<'any' | 'block' | 'flow'>('any', 'block', 'flow');
const yamlOf = (value: fc.Arbitrary<unknown>) =>
  fc.tuple(value, collectionStyle).map(([v, style]) => stringify(v, { collectionStyle: style }));

const NAME = /^[a-z0-9](?:[-a-z0-9]{0,14}[a-z0-9])?$/;
const name = fc.stringMatching(NAME);

/** Documents with the right envelope and an arbitrary body. */
const envelope = fc.record({
  apiVersion: fc.constant(API_VERSION),
  kind: fc.constantFrom(...KINDS),
  metadata: fc.oneof(fc.record({ name }), fc.jsonValue({ maxDepth: 2 })),
  spec: fc.oneof(
    fc.dictionary(
      fc.constantFrom(
        'targetRef',
        'zones',
        'ports',
        'host',
        'defaults',
        'retries',
        'timeouts',
        'proxy',
        'sampling',
        'x',
      ),
      fc.jsonValue({ maxDepth: 3 }),
      { maxKeys: 4 },
    ),
    fc.jsonValue({ maxDepth: 3 }),
  ),
});

const BASE_POLICY = {
  apiVersion: API_VERSION,
  kind: 'TrafficPolicy',
  metadata: { name: 'checkout', labels: { team: 'payments' } },
  spec: {
    targetRef: { kind: 'Route', service: 'checkout', name: 'get-cart' },
    timeouts: { connect: '500ms', perTry: '1s', overall: '10s', propagate: true },
    retries: {
      maxAttempts: 3,
      retryOn: ['connect-failure', 'reset'],
      retryOnStatusCodes: [429],
      backoff: { base: '25ms', max: '250ms' },
      budget: { ratio: 0.2, minPerSecond: 10, window: '10s' },
    },
    circuitBreaker: { maxConnections: 100, pendingTimeout: '250ms' },
    localityFailover: {
      priorities: ['zone', 'region', 'remote'],
      panicThreshold: 0.25,
      regionHealth: { ejectBelow: 0.5, readmitAfter: '5s' },
    },
    healthChecks: { enabled: true, path: '/healthz', interval: '2s' },
    hedging: { enabled: false, afterQuantile: 0.95 },
    fallback: { staleIfError: { maxBytes: '16MiB' }, static: { status: 503, body: '' } },
    consistency: { mode: 'eventual', maxStaleness: '30s' },
    degradation: { flags: ['read-only'] },
  },
} as const;

type Path = (string | number)[];

function pathsOf(value: unknown, prefix: Path = []): Path[] {
  const out: Path[] = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...pathsOf(v, [...prefix, i])));
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]));
  return out;
}

function containerAt(root: unknown, path: Path): unknown {
  let cur = root;
  for (const seg of path) cur = (cur as Record<string | number, unknown>)[seg];
  return cur;
}

/** Sets an own property, even for keys such as `__proto__`. */
function setOwn(target: object, key: string | number, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

const mutationValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom<unknown>(
    250,
    0,
    -1,
    20,
    1e21,
    0.5,
    '',
    '5',
    '5s',
    '2h',
    '-1s',
    '1d',
    '64mb',
    '20%',
    'Mesh',
    'Us_east',
    null,
    true,
    [],
    {},
    ['zone', 'zone'],
    { exact: '/a', prefix: '/b' },
  ),
);
const mutationKey = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.constantFrom(
    'retrys',
    'perTry',
    'name',
    'kind',
    '__proto__',
    'constructor',
    '0',
    'a.b',
    'x/y~z',
    '<<',
    '',
  ),
);
const mutation = fc.record({
  op: fc.constantFrom('replace', 'replace', 'add', 'delete'),
  at: fc.nat(),
  key: mutationKey,
  value: mutationValue,
});

function mutate(
  base: unknown,
  mutations: readonly { op: string; at: number; key: string; value: unknown }[],
): unknown {
  const doc = structuredClone(base);
  for (const m of mutations) {
    const paths = pathsOf(doc).filter((p) => p.length > 0);
    if (m.op === 'add') {
      const containers = pathsOf(doc).filter((p) => {
        const c = containerAt(doc, p);
        return c !== null && typeof c === 'object' && !Array.isArray(c);
      });
      const target = containers[m.at % containers.length];
      // Clone: fast-check may hand the same object to two mutations, which would make a cycle.
      if (target) setOwn(containerAt(doc, target) as object, m.key, structuredClone(m.value));
      continue;
    }
    const path = paths[m.at % paths.length];
    if (!path) continue;
    const parent = containerAt(doc, path.slice(0, -1)) as Record<string | number, unknown> | unknown[];
    const last = path[path.length - 1] as string | number;
    if (m.op === 'replace') setOwn(parent, last, structuredClone(m.value));
    else if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  }
  return doc;
}

const mutatedPolicy = fc
  .tuple(fc.array(mutation, { minLength: 1, maxLength: 4 }), collectionStyle)
  .map(([ms, style]) => stringify(mutate(BASE_POLICY, ms), { collectionStyle: style }));

// ---------------------------------------------------------------------------------------------
// (a) never throws, every diagnostic well formed
// ---------------------------------------------------------------------------------------------

describe('loadText on arbitrary input', () => {
  it('arbitrary strings', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 })),
        (text) => {
          checkWellFormed(text, load(text));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('YAML-like token soup', () => {
    fc.assert(
      fc.property(yamlish, (text) => {
        checkWellFormed(text, load(text));
      }),
      {
        numRuns: 400,
        // Found by this property: yaml's LineCounter misses the newline inside a folded plain
        // scalar, so errors after it were placed on the previous line, past its end.
        examples: [
          ['  a: 1\nfoo bar\nb: c\n'],
          ['  targetRef: {kind: Mesh}\n%YAML 1.2\napiVersion: isthmus.dev/v1alpha1\n'],
        ],
      },
    );
  });

  it('stringified JSON values, and several of them as one multi-document file', () => {
    fc.assert(
      fc.property(fc.array(yamlOf(fc.jsonValue({ maxDepth: 4 })), { minLength: 1, maxLength: 3 }), (docs) => {
        const text = docs.map((d) => `---\n${d}`).join('');
        checkWellFormed(docs[0] as string, load(docs[0] as string));
        checkWellFormed(text, load(text));
      }),
      { numRuns: 150 },
    );
  });

  it('documents with a valid envelope and an arbitrary body', () => {
    fc.assert(
      fc.property(yamlOf(envelope), (text) => {
        checkWellFormed(text, load(text));
      }),
      { numRuns: 150 },
    );
  });

  it('mutations of a valid TrafficPolicy', () => {
    fc.assert(
      fc.property(mutatedPolicy, (text) => {
        checkWellFormed(text, load(text));
      }),
      { numRuns: 150 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// (b) schema-level rejections name a field of the document
// ---------------------------------------------------------------------------------------------

describe('schema-level diagnostics', () => {
  it('the mutation base is valid', () => {
    const result = load(stringify(BASE_POLICY));
    assert.deepEqual(result.diagnostics, []);
    assert.equal(result.resources.length, 1);
  });

  for (const [label, arb] of [
    ['mutated TrafficPolicy', mutatedPolicy],
    ['arbitrary bodies', yamlOf(envelope)],
  ] as const) {
    it(`name a path that is in the document (${label})`, () => {
      let checked = 0;
      fc.assert(
        fc.property(arb, (text) => {
          const value = schemaLevelValue(text);
          const result = load(text);
          if (!value) return;
          checked++;
          checkSchemaPaths(text, value, result.diagnostics);
          // Errors and a loaded resource exclude each other.
          assert.equal(result.resources.length, result.diagnostics.length === 0 ? 1 : 0, text);
        }),
        { numRuns: 200 },
      );
      assert.ok(checked > 100, `only ${checked} inputs were schema-level documents`);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// (c) valid documents built from settings values load unchanged
// ---------------------------------------------------------------------------------------------

/** A duration of `ms` milliseconds, written in a randomly chosen combination of units. */
function durationArb(minMs: number, maxMs: number): fc.Arbitrary<string> {
  return fc.integer({ min: minMs, max: maxMs }).chain((ms) => {
    const forms: string[] = [`${ms}ms`];
    if (ms % 1000 === 0) forms.push(`${ms / 1000}s`);
    if (ms % 60_000 === 0) forms.push(`${ms / 60_000}m`);
    if (ms % 3_600_000 === 0) forms.push(`${ms / 3_600_000}h`);
    if (ms >= 60_000 && ms % 1000 === 0 && ms % 60_000 !== 0)
      forms.push(`${Math.floor(ms / 60_000)}m${(ms % 60_000) / 1000}s`);
    return fc.constantFrom(...forms);
  });
}

const ratio = fc.double({ min: 0, max: 1, noNaN: true });
const HOUR = 3_600_000;

const settingsSpec = fc.record(
  {
    timeouts: fc.record(
      {
        connect: durationArb(1, 60_000),
        perTry: durationArb(1, HOUR),
        overall: fc.oneof(durationArb(1, HOUR), fc.constantFrom('1h', '60m', '3600s', '59m60s')),
        propagate: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
    retries: fc.record(
      {
        maxAttempts: fc.integer({ min: 1, max: 10 }),
        backoff: fc.record(
          { base: durationArb(1, 60_000), max: durationArb(1, 300_000) },
          { requiredKeys: [] },
        ),
        budget: fc.record(
          { ratio, minPerSecond: fc.integer({ min: 0, max: 100_000 }), window: durationArb(1000, 600_000) },
          { requiredKeys: [] },
        ),
        crossRegion: fc.record({ ratio }, { requiredKeys: [] }),
      },
      { requiredKeys: [] },
    ),
    localityFailover: fc.record(
      {
        priorities: fc.shuffledSubarray(['zone', 'region', 'remote'], { minLength: 1 }),
        panicThreshold: ratio,
        failback: fc.record({ slowStart: durationArb(0, HOUR), initialWeight: ratio }, { requiredKeys: [] }),
      },
      { requiredKeys: [] },
    ),
    hedging: fc.record({ enabled: fc.boolean(), afterQuantile: ratio }, { requiredKeys: [] }),
    faultInjection: fc.record(
      { delay: fc.record({ ratio, duration: durationArb(0, HOUR) }) },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

/** A copy made of ordinary objects and arrays (fast-check may build null-prototype objects). */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

const targetRef = fc.oneof(
  fc.constant({ kind: 'Mesh' }),
  name.map((n) => ({ kind: 'Service', name: n })),
  fc.tuple(name, name).map(([service, n]) => ({ kind: 'Route', service, name: n })),
);

describe('valid TrafficPolicies round-trip', () => {
  it('load with no diagnostics and the values written', () => {
    fc.assert(
      fc.property(name, targetRef, settingsSpec, collectionStyle, (policyName, target, settings, style) => {
        const spec = plain({ targetRef: target, ...settings });
        const text = stringify(
          { apiVersion: API_VERSION, kind: 'TrafficPolicy', metadata: { name: policyName }, spec },
          { collectionStyle: style },
        );
        const result = load(text);
        assert.deepEqual(result.diagnostics, [], text);
        assert.equal(result.resources.length, 1);
        const [loaded] = result.resources;
        assert.equal(loaded?.resource.kind, 'TrafficPolicy');
        assert.equal(loaded?.resource.metadata.name, policyName);
        assert.deepEqual(loaded?.resource.spec, spec);
      }),
      { numRuns: 200 },
    );
  });
});
