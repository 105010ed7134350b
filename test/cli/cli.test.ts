/**
 * End-to-end tests of the `isthmus` command line: each test runs the real bin
 * (dist/src/cli/main.js) in a child process from the repository root, with NO_COLOR=1, and checks
 * its exit code, stdout and stderr. Runs are memoised by their arguments and the suites run
 * concurrently, so the whole file costs a couple of dozen short-lived processes.
 *
 * Expected locations are computed from the example files' text, so they stay right when the
 * examples are edited.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { describeRun, isthmus, type CliResult } from '../support/cli.js';
import { fromRoot } from '../support/paths.js';

// ---------------------------------------------------------------------------------------------
// Running the bin
// ---------------------------------------------------------------------------------------------

interface Run extends CliResult {
  /** The run as text, for assertion messages. */
  show: string;
}

const runs = new Map<string, Promise<Run>>();

/** Runs `isthmus ...args` once per distinct argument list; tests sharing a run share the process. */
function run(...args: string[]): Promise<Run> {
  const key = JSON.stringify(args);
  let pending = runs.get(key);
  if (!pending) {
    pending = isthmus(args).then((r) => ({ ...r, show: describeRun(args, r) }));
    runs.set(key, pending);
  }
  return pending;
}

function expectExit(r: Run, code: number): void {
  assert.equal(r.code, code, `expected exit status ${code}\n${r.show}`);
}

/** Whatever the outcome, the CLI must not crash, print a stack trace or colour piped output. */
function expectNoCrash(r: Run): void {
  const all = `${r.stdout}\n${r.stderr}`;
  assert.doesNotMatch(all, /^\s+at \S.*:\d+:\d+\)?$/m, `output contains a stack trace\n${r.show}`);
  assert.doesNotMatch(all, /^ {4}at /m, `output contains a stack trace\n${r.show}`);
  assert.doesNotMatch(all, /internal error|Unhandled 'error' event/, `internal error\n${r.show}`);
  assert.ok(!all.includes('\u001b['), `colour codes although NO_COLOR=1 and output is a pipe\n${r.show}`);
  assert.notEqual(r.code, 70, `exit 70 (internal bug)\n${r.show}`);
  assert.equal(r.signal, null, `killed by ${r.signal}\n${r.show}`);
}

function parseJson(r: Run): unknown {
  try {
    return JSON.parse(r.stdout) as unknown;
  } catch (err) {
    assert.fail(`stdout is not JSON (${(err as Error).message})\n${r.show}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Diagnostics as printed: `file:line:col: severity: Kind/name path: message` + indented details
// ---------------------------------------------------------------------------------------------

interface Block {
  header: string;
  details: string[];
}

/** Splits stderr into one block per unindented line, with the indented lines that follow it. */
function blocks(text: string): Block[] {
  const out: Block[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (/^\s/.test(line) && out.length > 0) out[out.length - 1]?.details.push(line);
    else out.push({ header: line, details: [] });
  }
  return out;
}

const LOCATED =
  /^(?<file>\S+?):(?<line>\d+):(?<col>\d+): (?<severity>error|warning): (?<resource>[A-Z][A-Za-z]+\/[\w-]+) (?<path>[\w.[\]-]+): (?<message>\S.*)$/;

/** The block whose header starts with `prefix`, or a failure listing the headers there are. */
function blockStarting(all: Block[], prefix: string, r: Run): Block {
  const found = all.find((b) => b.header.startsWith(prefix));
  if (!found) {
    assert.fail(
      `no diagnostic starting with\n  ${prefix}\nheaders:\n${all.map((b) => `  ${b.header}`).join('\n')}\n${r.show}`,
    );
  }
  return found;
}

function hasDetail(block: Block, label: string, value: string | RegExp): boolean {
  return block.details.some((d) => {
    const m = /^\s+(\w+)\s+(.*)$/.exec(d);
    if (!m || m[1] !== label) return false;
    return typeof value === 'string' ? m[2] === value : value.test(m[2] ?? '');
  });
}

// ---------------------------------------------------------------------------------------------
// Locations in the fixture files
// ---------------------------------------------------------------------------------------------

/**
 * `file:line:col` of `token` on the one line of `file` matching `linePattern`. `file` is shown as
 * given (relative to the repository root, or absolute for temp files).
 */
async function locate(file: string, linePattern: RegExp, token: string): Promise<string> {
  const text = await readFile(path.isAbsolute(file) ? file : fromRoot(file), 'utf8');
  const lines = text.split('\n');
  const hits = lines.flatMap((l, i) => (linePattern.test(l) ? [i] : []));
  assert.equal(hits.length, 1, `fixture changed? expected one line matching ${linePattern} in ${file}`);
  const index = hits[0] as number;
  const col = (lines[index] as string).indexOf(token) + 1;
  assert.ok(col > 0, `"${token}" is not on line ${index + 1} of ${file}`);
  return `${file}:${index + 1}:${col}`;
}

/** Rewrites the document of `file` that declares `name: <name>`; `edit` returning '' deletes it. */
async function editDocument(file: string, name: string, edit: (doc: string) => string): Promise<void> {
  const text = await readFile(file, 'utf8');
  const docs = text.split(/(?<=\n)(?=---\n)/);
  const index = docs.findIndex((d) => new RegExp(`^  name: ${name}$`, 'm').test(d));
  assert.ok(index >= 0, `fixture changed? no document named ${name} in ${file}`);
  const edited = edit(docs[index] as string);
  assert.notEqual(edited, docs[index], `fixture changed? editing ${name} in ${file} changed nothing`);
  docs[index] = edited;
  await writeFile(file, docs.join(''));
}

const GEO_IP = `apiVersion: isthmus.dev/v1alpha1
kind: ExternalService
metadata:
  name: geo-ip
spec:
  host: geo.ip.example
  ports: [443]
  protocol: https
`;

/** Line 4 has an unquoted ": " inside a plain scalar: a YAML syntax error at `lab` (4:9). */
const SYNTAX_ERROR = `apiVersion: isthmus.dev/v1alpha1
kind: Region
metadata:
  name: lab: west
spec:
  zones:
    - name: lab-a
`;

/** Starts like a PNG and holds byte sequences that are not UTF-8. */
const BINARY = Buffer.from([
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0xfe, 0x00, 0x00, 0xc3, 0x28,
]);

let tmp = '';
/** examples/mesh with one field changed, one resource removed and one added. */
let changed = '';
/** examples/mesh with a schema error in policies/routes.yaml. */
let invalid = '';
let emptyDir = '';
let syntaxFile = '';
let binaryFile = '';
let missing = '';

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'isthmus-cli-'));

  changed = path.join(tmp, 'changed');
  await cp(fromRoot('examples', 'mesh'), changed, { recursive: true });
  await editDocument(path.join(changed, 'policies', 'routes.yaml'), 'orders-create-order', (doc) =>
    doc.replace(/^ {4}maxAttempts: 2$/m, '    maxAttempts: 3'),
  );
  await editDocument(path.join(changed, 'external.yaml'), 'fx-rates', () => '');
  await writeFile(path.join(changed, 'added.yaml'), GEO_IP);

  invalid = path.join(tmp, 'invalid');
  await cp(fromRoot('examples', 'mesh'), invalid, { recursive: true });
  await editDocument(path.join(invalid, 'policies', 'routes.yaml'), 'orders-create-order', (doc) =>
    doc.replace(/^ {4}maxAttempts: 2$/m, '    maxAttempts: two'),
  );

  emptyDir = path.join(tmp, 'empty');
  await mkdir(emptyDir);
  await writeFile(path.join(emptyDir, 'README.md'), 'no resources here\n');
  syntaxFile = path.join(tmp, 'syntax.yaml');
  await writeFile(syntaxFile, SYNTAX_ERROR);
  binaryFile = path.join(tmp, 'x.yaml');
  await writeFile(binaryFile, BINARY);
  missing = path.join(tmp, 'does-not-exist');
});

after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

describe('isthmus validate', { concurrency: true }, () => {
  it('accepts examples/mesh: exit 0, a one-line summary on stdout, nothing on stderr', async () => {
    const r = await run('validate', 'examples/mesh');
    expectNoCrash(r);
    expectExit(r, 0);
    assert.match(r.stdout, /^✓ (\d+) resources in (\d+) files valid\n$/, r.show);
    const [, resources, files] = /(\d+) resources in (\d+) files/.exec(r.stdout) ?? [];
    assert.ok(Number(resources) >= 20, `too few resources\n${r.show}`);
    assert.equal(Number(files), 12, `examples/mesh has 12 YAML files\n${r.show}`);
    assert.equal(r.stderr, '', r.show);
  });

  it('reports every mistake in examples/broken, each located as file:line:col', async () => {
    const r = await run('validate', 'examples/broken');
    expectNoCrash(r);
    expectExit(r, 1);
    assert.equal(r.stdout, '', `diagnostics belong on stderr\n${r.show}`);

    const all = blocks(r.stderr);
    const summary = all.pop();
    const diagnostics = all;
    for (const b of diagnostics) {
      assert.match(b.header, LOCATED, `not "file:line:col: severity: Kind/name path: message"\n${r.show}`);
    }
    const files = new Set(diagnostics.map((b) => LOCATED.exec(b.header)?.groups?.file));
    assert.deepEqual(
      [...files].sort(),
      [
        'examples/broken/conflicts.yaml',
        'examples/broken/references.yaml',
        'examples/broken/schema-mistakes.yaml',
      ],
      r.show,
    );

    // One diagnostic per "# ERROR:" / "# WARNING:" marker in the files: all problems in one run.
    let errorMarkers = 0;
    let warningMarkers = 0;
    for (const f of files) {
      const text = await readFile(fromRoot(f as string), 'utf8');
      errorMarkers += (text.match(/^\s*# ERROR:/gm) ?? []).length;
      warningMarkers += (text.match(/^\s*# WARNING:/gm) ?? []).length;
    }
    const errors = diagnostics.filter((b) => LOCATED.exec(b.header)?.groups?.severity === 'error').length;
    const warnings = diagnostics.length - errors;
    assert.equal(errors, errorMarkers, `expected one error per "# ERROR:" marker\n${r.show}`);
    assert.equal(warnings, warningMarkers, `expected one warning per "# WARNING:" marker\n${r.show}`);

    // The summary counts what was printed.
    assert.equal(
      summary?.header,
      `✗ invalid: ${errors} error${errors === 1 ? '' : 's'}${warnings ? `, ${warnings} warning${warnings === 1 ? '' : 's'}` : ''} in 3 files`,
      r.show,
    );

    // The unknown field is reported at its key, with a suggestion.
    const retrys = await locate('examples/broken/schema-mistakes.yaml', /^\s*retrys:/, 'retrys');
    const typo = blockStarting(
      diagnostics,
      `${retrys}: error: TrafficPolicy/catalog-retries spec.retrys: unknown field "retrys"`,
      r,
    );
    assert.ok(hasDetail(typo, 'hint', 'did you mean "retries"?'), r.show);

    // Values are reported at the value.
    const maxBytes = await locate('examples/broken/schema-mistakes.yaml', /^\s*maxBytes: 64mb/, '64mb');
    const size = blockStarting(
      diagnostics,
      `${maxBytes}: error: TelemetryPolicy/telemetry spec.buffer.maxBytes: `,
      r,
    );
    assert.ok(hasDetail(size, 'found', /64mb/), r.show);
    assert.ok(hasDetail(size, 'hint', /64MiB/), r.show);

    const perTry = await locate('examples/broken/schema-mistakes.yaml', /^\s*perTry: 250$/, '250');
    const bare = blockStarting(
      diagnostics,
      `${perTry}: error: TrafficPolicy/catalog-timeouts spec.timeouts.perTry: `,
      r,
    );
    assert.ok(hasDetail(bare, 'hint', /"250ms"/), r.show);

    // Cross-resource references.
    const home = await locate('examples/broken/references.yaml', /^\s*homeRegion: us-west/, 'us-west');
    const region = blockStarting(diagnostics, `${home}: error: Service/orders spec.homeRegion: `, r);
    assert.match(region.header, /region "us-west" does not exist/, r.show);
    assert.ok(hasDetail(region, 'hint', 'did you mean "us-east"?'), r.show);

    const target = await locate('examples/broken/references.yaml', /^\s*name: catalogue$/, 'catalogue');
    const ref = blockStarting(
      diagnostics,
      `${target}: error: TrafficPolicy/catalogue-hedging spec.targetRef.name: `,
      r,
    );
    assert.ok(hasDetail(ref, 'hint', 'did you mean "catalog"?'), r.show);

    // Conflicting policies point at each other.
    const sre = await locate('examples/broken/conflicts.yaml', /^\s*overall: 8s$/, 'overall');
    const platform = await locate('examples/broken/conflicts.yaml', /^\s*overall: 5s$/, 'overall');
    const conflict = blockStarting(
      diagnostics,
      `${sre}: error: TrafficPolicy/sre-timeouts spec.timeouts.overall: `,
      r,
    );
    assert.ok(
      hasDetail(conflict, 'see', new RegExp(`^${platform}: .*TrafficPolicy/platform-timeouts`)),
      r.show,
    );
  });

  it('--json: a machine-readable report on stdout, exit 1', async () => {
    const r = await run('validate', '--json', 'examples/broken');
    expectNoCrash(r);
    expectExit(r, 1);
    assert.equal(r.stderr, '', `--json prints nothing else\n${r.show}`);
    const report = parseJson(r) as {
      ok: unknown;
      errors: unknown;
      warnings: unknown;
      diagnostics: Record<string, unknown>[];
    };
    assert.equal(report.ok, false);
    assert.ok(Array.isArray(report.diagnostics) && report.diagnostics.length > 0, r.show);
    const errors = report.diagnostics.filter((d) => d.severity === 'error').length;
    assert.equal(report.errors, errors, 'errors counts the diagnostics of severity error');
    assert.equal(report.warnings, report.diagnostics.length - errors);
    for (const d of report.diagnostics) {
      const where = JSON.stringify(d);
      assert.ok(['error', 'warning'].includes(d.severity as string), where);
      assert.ok(typeof d.file === 'string' && d.file.startsWith('examples/broken/'), where);
      assert.ok(Number.isInteger(d.line) && (d.line as number) >= 1, where);
      assert.ok(Number.isInteger(d.col) && (d.col as number) >= 1, where);
      assert.ok(typeof d.rule === 'string' && d.rule !== '', where);
      assert.ok(typeof d.message === 'string' && d.message !== '', where);
    }
    const [file, line, col] = (
      await locate('examples/broken/schema-mistakes.yaml', /^\s*retrys:/, 'retrys')
    ).split(':');
    const typo = report.diagnostics.find((d) => d.path === 'spec.retrys');
    assert.deepEqual(typo && { file: typo.file, line: typo.line, col: typo.col, resource: typo.resource }, {
      file,
      line: Number(line),
      col: Number(col),
      resource: 'TrafficPolicy/catalog-retries',
    });
  });

  it('unreadable input: a YAML syntax error, a missing path and a binary file, all in one run, exit 1', async () => {
    const r = await run('validate', syntaxFile, missing, binaryFile);
    expectNoCrash(r);
    expectExit(r, 1);
    assert.equal(r.stdout, '', r.show);
    const all = blocks(r.stderr);
    assert.equal(all.length, 4, `three diagnostics and the summary\n${r.show}`);

    const at = await locate(syntaxFile, /^ {2}name: lab: west$/, 'lab');
    const syntax = blockStarting(all, `${at}: error: `, r);
    assert.doesNotMatch(syntax.header, /at line \d+, column \d+/, 'the location is in front, not repeated');
    assert.ok(hasDetail(syntax, 'hint', 'fix the YAML syntax'), r.show);

    blockStarting(all, `${missing}:1:1: error: no such file or directory`, r);
    blockStarting(all, `${binaryFile}:1:1: error: file is not valid UTF-8 text`, r);
    assert.equal(all.at(-1)?.header, '✗ invalid: 3 errors in 2 files', r.show);
  });

  it('a directory without YAML files: one warning, nothing invalid, exit 0', async () => {
    const r = await run('validate', emptyDir);
    expectNoCrash(r);
    expectExit(r, 0);
    assert.equal(r.stdout, '✓ 0 resources in 0 files valid (1 warning)\n', r.show);
    const warning = `${emptyDir}:1:1: warning: no .yaml or .yml files found here`;
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.deepEqual(lines, [warning], `the warning is printed exactly once\n${r.show}`);
  });
});

// ---------------------------------------------------------------------------------------------
// schema
// ---------------------------------------------------------------------------------------------

describe('isthmus schema', { concurrency: true }, () => {
  it('prints a JSON Schema that accepts every example resource and rejects unknown fields', async () => {
    const r = await run('schema');
    expectNoCrash(r);
    expectExit(r, 0);
    assert.equal(r.stderr, '', r.show);
    const schema = parseJson(r) as Record<string, unknown>;
    assert.equal(typeof schema.$schema, 'string');
    assert.match(schema.$schema as string, /json-schema\.org/);

    const ajv = new Ajv({ strict: false, allErrors: true });
    const validate = ajv.compile(schema);

    const files = [
      'mesh.yaml',
      'regions.yaml',
      'external.yaml',
      'services/catalog.yaml',
      'services/frontend.yaml',
      'services/inventory.yaml',
      'services/orders.yaml',
      'services/recommendations.yaml',
      'policies/traffic.yaml',
      'policies/routes.yaml',
      'policies/telemetry.yaml',
      'policies/partition.yaml',
    ];
    const kinds = new Set<string>();
    let trafficPolicy: Record<string, unknown> | undefined;
    for (const f of files) {
      const text = await readFile(fromRoot('examples', 'mesh', f), 'utf8');
      for (const doc of parseAllDocuments(text)) {
        if (doc.contents === null) continue;
        const value = doc.toJS() as Record<string, unknown>;
        const id = `${String(value.kind)}/${String((value.metadata as { name?: unknown }).name)} in ${f}`;
        assert.ok(validate(value), `${id} does not validate:\n${ajv.errorsText(validate.errors)}`);
        kinds.add(value.kind as string);
        if (value.kind === 'TrafficPolicy' && (value.spec as { retries?: unknown }).retries)
          trafficPolicy = value;
      }
    }
    assert.deepEqual(
      [...kinds].sort(),
      [...(schema.properties as { kind: { enum: string[] } }).kind.enum].sort(),
    );

    // An editor using the schema flags a misspelt field as the user types it.
    assert.ok(trafficPolicy, 'examples/mesh has a TrafficPolicy with retries');
    const typo = structuredClone(trafficPolicy);
    (typo.spec as { retries: Record<string, unknown> }).retries.maxAttempt = 3;
    assert.equal(validate(typo), false, 'unknown field spec.retries.maxAttempt is accepted');
    assert.ok(
      validate.errors?.some(
        (e) => e.instancePath === '/spec/retries' && e.keyword === 'additionalProperties',
      ),
      ajv.errorsText(validate.errors),
    );
    const badKind = { ...trafficPolicy, kind: 'TraficPolicy' };
    assert.equal(validate(badKind), false, 'an unknown kind is accepted');
  });

  it('--kind TrafficPolicy prints the schema of that kind only', async () => {
    const r = await run('schema', '--kind', 'TrafficPolicy');
    expectNoCrash(r);
    expectExit(r, 0);
    const schema = parseJson(r) as { properties?: { kind?: { const?: unknown }; spec?: unknown } };
    assert.equal(schema.properties?.kind?.const, 'TrafficPolicy', r.show);
    assert.ok(schema.properties?.spec, r.show);
  });

  it('--kind Nope is a usage error (exit 2) listing the kinds', async () => {
    const r = await run('schema', '--kind', 'Nope');
    expectNoCrash(r);
    expectExit(r, 2);
    assert.equal(r.stdout, '', r.show);
    assert.match(r.stderr, /Nope/, r.show);
    assert.match(r.stderr, /TrafficPolicy/, r.show);
  });

  it('does not crash when the reader of its output goes away (isthmus schema | head -1)', async () => {
    const args = ['schema'];
    const r = await isthmus(args, { closeStdout: true });
    expectNoCrash({ ...r, show: describeRun(args, r) });
  });
});

// ---------------------------------------------------------------------------------------------
// diff
// ---------------------------------------------------------------------------------------------

describe('isthmus diff', { concurrency: true }, () => {
  it('lists added, removed and changed resources with old → new values; --exit-code exits 3', async () => {
    const r = await run('diff', '--exit-code', 'examples/mesh', changed);
    expectNoCrash(r);
    expectExit(r, 3);
    assert.equal(r.stderr, '', r.show);
    const lines = r.stdout.trimEnd().split('\n');
    assert.ok(lines.includes('+ ExternalService/geo-ip'), r.show);
    assert.ok(lines.includes('- ExternalService/fx-rates'), r.show);
    const header = lines.indexOf('~ TrafficPolicy/orders-create-order');
    assert.ok(header >= 0, r.show);
    assert.equal(lines[header + 1], '    ~ spec.retries.maxAttempts: 2 → 3', r.show);
    assert.equal(lines.at(-1), 'Plan: 1 to add, 1 to change, 1 to remove.', r.show);
    assert.equal(lines.length, 5, `nothing else changed\n${r.show}`);
  });

  it('--json prints the same diff as JSON, exit 0 without --exit-code', async () => {
    const r = await run('diff', '--json', 'examples/mesh', changed);
    expectNoCrash(r);
    expectExit(r, 0);
    const diff = parseJson(r) as {
      changes: { op: string; kind: string; name: string }[];
      summary: unknown;
    };
    assert.deepEqual(diff.summary, { add: 1, change: 1, remove: 1 });
    assert.deepEqual(diff.changes.map((c) => `${c.op} ${c.kind}/${c.name}`).sort(), [
      'add ExternalService/geo-ip',
      'change TrafficPolicy/orders-create-order',
      'remove ExternalService/fx-rates',
    ]);
  });

  it('--exit-code exits 0 for identical trees and says so', async () => {
    const r = await run('diff', '--exit-code', 'examples/mesh', 'examples/mesh');
    expectNoCrash(r);
    expectExit(r, 0);
    assert.equal(r.stdout, 'No changes.\n', r.show);
  });

  it('refuses to diff against an invalid tree: exit 1, located errors, nothing on stdout', async () => {
    const r = await run('diff', 'examples/mesh', invalid);
    expectNoCrash(r);
    expectExit(r, 1);
    assert.equal(r.stdout, '', r.show);
    const routes = path.join(invalid, 'policies', 'routes.yaml');
    const at = await locate(routes, /^ {4}maxAttempts: two$/, 'two');
    const all = blocks(r.stderr);
    blockStarting(all, `${at}: error: TrafficPolicy/orders-create-order spec.retries.maxAttempts: `, r);
    assert.match(all.at(-1)?.header ?? '', /^✗ new \(.*\): 1 error in 12 files$/, r.show);
  });
});

// ---------------------------------------------------------------------------------------------
// explain
// ---------------------------------------------------------------------------------------------

describe('isthmus explain', { concurrency: true }, () => {
  const explain = ['explain', 'examples/mesh', '--service', 'orders', '--route', 'create-order'];
  const from = ['--from', 'eu-west/eu-west-a'];

  it('shows the routing plan and the origin of every field', async () => {
    const r = await run(...explain, ...from);
    expectNoCrash(r);
    expectExit(r, 0);
    assert.equal(r.stderr, '', r.show);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], 'Effective policy for orders route create-order from eu-west/eu-west-a', r.show);

    // Strong consistency: served by the home region only, through its gateway.
    const plan = lines.indexOf(lines.find((l) => l.startsWith('Routing plan')) ?? '');
    assert.ok(plan > 0, r.show);
    const end = lines.indexOf('', plan);
    const section = lines.slice(plan + 1, end);
    const tiers = section.filter((l) => /^\s+P\d+\s/.test(l));
    assert.equal(tiers.length, 1, `one tier only\n${r.show}`);
    assert.match(tiers[0] ?? '', /^\s+P0\s+remote\s+us-east \(us-east-a, us-east-b\)\s+via gateway/, r.show);
    assert.ok(
      section.some((l) => /note: .*strong consistency/.test(l)),
      r.show,
    );

    const field = (key: string) => {
      const line = lines.find((l) => new RegExp(`^\\s+${key.replace(/\./g, '\\.')}\\s`).test(l));
      assert.ok(line, `no line for ${key}\n${r.show}`);
      return line;
    };
    const overall = await locate('examples/mesh/policies/routes.yaml', /^\s*overall: 15s$/, 'overall');
    assert.match(field('timeouts.overall'), /\s15s\s/);
    assert.ok(field('timeouts.overall').endsWith(` TrafficPolicy/orders-create-order (${overall})`), r.show);
    const ratio = await locate('examples/mesh/mesh.yaml', /^\s*ratio: 0\.1$/, 'ratio');
    assert.ok(field('retries.budget.ratio').endsWith(` Mesh/default (${ratio})`), r.show);
    assert.ok(field('timeouts.connect').endsWith(' built-in default'), r.show);
    assert.ok(lines.includes('Partition settings (region eu-west)'), r.show);
  });

  it('--json: values and origins by field path', async () => {
    const r = await run(...explain, ...from, '--json');
    expectNoCrash(r);
    expectExit(r, 0);
    const out = parseJson(r) as {
      routingPlan: { tiers: { region: string; via: string }[] };
      traffic: {
        value: { timeouts: { overall: unknown } };
        origins: Record<string, Record<string, unknown>>;
      };
    };
    assert.deepEqual(
      out.routingPlan.tiers.map((t) => `${t.region} ${t.via}`),
      ['us-east gateway'],
    );
    assert.equal(out.traffic.value.timeouts.overall, '15s');
    const [file, line, col] = (
      await locate('examples/mesh/policies/routes.yaml', /^\s*overall: 15s$/, 'overall')
    ).split(':');
    const origin = out.traffic.origins['timeouts.overall'];
    assert.deepEqual(
      origin && { resource: origin.resource, file: origin.file, line: origin.line, col: origin.col },
      { resource: 'TrafficPolicy/orders-create-order', file, line: Number(line), col: Number(col) },
    );
    assert.equal(out.traffic.origins['timeouts.connect']?.level, 'builtin');
  });

  it('an unknown service: exit 1 with a did-you-mean', async () => {
    const r = await run('explain', 'examples/mesh', '--service', 'ordres');
    expectNoCrash(r);
    expectExit(r, 1);
    assert.equal(r.stdout, '', r.show);
    assert.match(r.stderr, /service "ordres" does not exist; did you mean "orders"\?/, r.show);
  });

  it('a malformed --from is a usage error (exit 2)', async () => {
    const r = await run(...explain, '--from', 'eu-west/eu-west-a/extra');
    expectNoCrash(r);
    expectExit(r, 2);
    assert.equal(r.stdout, '', r.show);
    assert.match(r.stderr, /--from/, r.show);
    assert.match(r.stderr, /REGION\/ZONE/, r.show);
  });
});

// ---------------------------------------------------------------------------------------------
// help, version and usage errors
// ---------------------------------------------------------------------------------------------

describe('isthmus help and usage', { concurrency: true }, () => {
  it('--help lists the commands, exit 0', async () => {
    const r = await run('--help');
    expectNoCrash(r);
    expectExit(r, 0);
    assert.match(r.stdout, /^Usage: isthmus /, r.show);
    for (const usage of [
      'validate [options] <paths...>',
      'schema [options]',
      'diff [options] <old> <new>',
      'explain [options] <paths...>',
    ])
      assert.ok(r.stdout.includes(usage), `help lacks "${usage}"\n${r.show}`);
    assert.doesNotMatch(r.stdout, /^\s+docs\b/m, `the docs command is hidden\n${r.show}`);
    assert.match(r.stdout, /Exit status: 0 success, 1 the input has problems, 2 wrong usage/, r.show);
  });

  const commands: [string, string[]][] = [
    ['validate', ['<paths...>', 'paths', '--json']],
    ['schema', ['--kind <kind>', 'TrafficPolicy']],
    ['diff', ['<old> <new>', 'old', 'new', '--json', '--exit-code']],
    ['explain', ['<paths...>', '--service <name>', '--route <name>', '--from <region/zone>', '--json']],
    ['global', ['--data-dir <dir>', '--listen <host:port>', '--store <url>', 'etcd://']],
    ['zone', ['--region <name>', '--data-dir <dir>', '--global <urls>']],
    ['apply', ['--file <paths...>', '--dry-run', '--server <url>']],
    ['get', ['[what]', '--server <url>']],
    ['history', ['[revision]', '--limit <n>']],
    ['rollback', ['<revision>']],
    ['status', ['--zone <url>', '--json']],
  ];
  for (const [command, mentions] of commands) {
    it(`${command} --help describes its arguments, exit 0`, async () => {
      const r = await run(command, '--help');
      expectNoCrash(r);
      expectExit(r, 0);
      assert.match(r.stdout, new RegExp(`^Usage: isthmus ${command} `), r.show);
      for (const m of mentions) assert.ok(r.stdout.includes(m), `help lacks "${m}"\n${r.show}`);
    });
  }

  it('control-plane commands reject bad flag values as usage errors, and an unreachable server clearly', async () => {
    const badListen = await run('global', '--data-dir', '/tmp/x', '--listen', 'nowhere');
    expectExit(badListen, 2);
    assert.match(badListen.stderr, /"nowhere" is not HOST:PORT/, badListen.show);
    const badGlobal = await run('zone', '--region', 'eu', '--data-dir', '/tmp/x', '--global', 'ftp://x');
    expectExit(badGlobal, 2);
    assert.match(badGlobal.stderr, /must be an http:\/\/ URL/, badGlobal.show);
    const badRevision = await run('rollback', 'three');
    expectExit(badRevision, 2);
    assert.match(badRevision.stderr, /"three" is not a revision number/, badRevision.show);
    const badStore = await run('global', '--data-dir', '/tmp/x', '--store', 'mysql://db');
    expectExit(badStore, 2);
    assert.match(badStore.stderr, /sqlite:|etcd:/, badStore.show);
    // Port 9 (discard) is closed on loopback: the command says where it tried and what to do.
    const unreachable = await run('get', '--server', 'http://127.0.0.1:9');
    expectNoCrash(unreachable);
    expectExit(unreachable, 1);
    assert.match(
      unreachable.stderr,
      /cannot reach the global control plane at http:\/\/127\.0\.0\.1:9/,
      unreachable.show,
    );
  });

  it('a zone refuses a corrupted data directory with a message naming the file, and leaves it as it was', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'isthmus-corrupt-'));
    try {
      const garbage = Buffer.from('SQLite format 3\u0000'.padEnd(4096, '\u00ff'), 'latin1');
      await writeFile(path.join(dir, 'zone.db'), garbage);
      const r = await run('zone', '--region', 'eu-west', '--data-dir', dir, '--listen', '127.0.0.1:0');
      expectNoCrash(r);
      expectExit(r, 1);
      assert.ok(r.stderr.includes(path.join(dir, 'zone.db')), r.show);
      assert.ok((await readFile(path.join(dir, 'zone.db'))).equals(garbage), 'the file is untouched');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an unknown command is a usage error with a suggestion (exit 2)', async () => {
    const r = await run('valdate', 'examples/mesh');
    expectNoCrash(r);
    expectExit(r, 2);
    assert.match(r.stderr, /unknown command 'valdate'/, r.show);
    assert.match(r.stderr, /Did you mean validate\?/i, r.show);
  });

  it('no arguments: prints the help, exit 2', async () => {
    const r = await run();
    expectNoCrash(r);
    expectExit(r, 2);
    assert.match(r.stdout + r.stderr, /Usage: isthmus /, r.show);
    assert.match(r.stdout + r.stderr, /validate \[options\] <paths\.\.\.>/, r.show);
  });

  it('--version prints the version of package.json', async () => {
    const r = await run('--version');
    expectNoCrash(r);
    expectExit(r, 0);
    const { version } = JSON.parse(await readFile(fromRoot('package.json'), 'utf8')) as { version: string };
    assert.equal(r.stdout, `${version}\n`, r.show);
  });
});
