import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { isAlias, isMap, isScalar, isSeq, parseAllDocuments, type Document, type Node } from 'yaml';
import { closestMatch, listOr } from '../core/text.js';
import { compareDiagnostics, describeValue, type Diagnostic, type Position } from './diagnostics.js';
import { API_VERSION, KINDS, type AnyResource, type Kind } from './resources.js';
import { formatPath } from './schema-walk.js';
import { validateDocument } from './validator.js';

/** Largest file read, so a mistaken path to a log or a binary fails fast with a clear error. */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;
/** Aliases expanded per document at most (guards against "billion laughs" documents). */
export const MAX_ALIASES = 100;

/** A resource together with where it came from, so later checks can point into the file. */
export interface LoadedResource {
  resource: AnyResource;
  file: string;
  /** 0-based index of the document within its file. */
  docIndex: number;
  /** Position of a field (or of the closest existing parent), `key` for the key rather than the value. */
  locate(fieldPath: readonly (string | number)[], key?: boolean): Position;
}

export interface LoadResult {
  resources: LoadedResource[];
  diagnostics: Diagnostic[];
  files: string[];
  /** `Kind/name` of documents that were rejected, so later checks don't also call them missing. */
  rejected: string[];
}

function nodeAt(doc: Document, fieldPath: readonly (string | number)[], key: boolean): Node | undefined {
  let node: Node | undefined = doc.contents ?? undefined;
  let keyNode: Node | undefined;
  for (const seg of fieldPath) {
    if (node && isAlias(node)) node = node.resolve(doc);
    keyNode = undefined;
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg),
      );
      if (!pair) return node;
      keyNode = (pair.key as Node | null) ?? undefined;
      node = (pair.value as Node | null) ?? keyNode;
    } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
      node = node.items[seg] as Node;
    } else {
      return node;
    }
  }
  return key && keyNode ? keyNode : node;
}

/**
 * Offset → 1-based line and column. Computed from the text itself rather than the parser's line
 * counter, which can miss a newline inside error recovery.
 */
class LineIndex {
  readonly #starts: number[] = [0];

  constructor(text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.#starts.push(i + 1);
  }

  linePos(offset: number): { line: number; col: number } {
    let lo = 0;
    let hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#starts[mid] as number) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: offset - (this.#starts[lo] as number) + 1 };
  }
}

function makeLocator(file: string, doc: Document, lines: LineIndex) {
  const docStart = doc.range?.[0] ?? 0;
  return (fieldPath: readonly (string | number)[], key = false): Position => {
    const node = nodeAt(doc, fieldPath, key);
    const offset = node?.range?.[0] ?? docStart;
    const { line, col } = lines.linePos(offset);
    return { file, line, col };
  };
}

function resourceId(value: Record<string, unknown>): string | undefined {
  const kind = value.kind;
  const name = (value.metadata as Record<string, unknown> | undefined)?.name;
  return typeof kind === 'string' && typeof name === 'string' ? `${kind}/${name}` : undefined;
}

/** One parsed YAML document: its plain value and a locator into its source, or a problem. */
export type ParsedDocument =
  { value: unknown; locate: LoadedResource['locate']; docIndex: number } | { diagnostic: Diagnostic };

/**
 * Parses a YAML stream strictly (YAML 1.2 core schema, unique keys, bounded aliases) into plain
 * values, skipping empty documents. Never throws: problems come back as diagnostics.
 */
/**
 * Parses a file that must hold exactly one YAML document of `what` (e.g. "Drill"): the document,
 * or the diagnostics saying why not (syntax problems, none or several documents).
 */
export function parseSingleDocument(
  text: string,
  file: string,
  what: string,
):
  | { doc: Extract<ParsedDocument, { value: unknown }>; diagnostics?: undefined }
  | { diagnostics: Diagnostic[] } {
  const docs = [...parseYaml(text, file)];
  const diagnostics: Diagnostic[] = [];
  for (const d of docs) if ('diagnostic' in d) diagnostics.push(d.diagnostic);
  if (diagnostics.length > 0) return { diagnostics };
  const parsed = docs.filter((d): d is Extract<ParsedDocument, { value: unknown }> => 'value' in d);
  const doc = parsed[0];
  if (doc && parsed.length === 1) return { doc };
  return {
    diagnostics: [
      {
        severity: 'error',
        rule: 'not-a-resource',
        file,
        line: 1,
        col: 1,
        message: `a ${what} file holds exactly one ${what} document, found ${parsed.length}`,
      },
    ],
  };
}

export function* parseYaml(text: string, file: string): Generator<ParsedDocument> {
  const lines = new LineIndex(text);
  // YAML 1.1 tags (!!set, !!omap, !!binary, !!timestamp) are not resolved: they would smuggle
  // Sets, Maps, Dates and Buffers past schemas written for JSON values.
  const parsed = parseAllDocuments(text, {
    uniqueKeys: true,
    strict: true,
    version: '1.2',
    schema: 'core',
    resolveKnownTags: false,
    prettyErrors: false,
  });
  const docs = Array.isArray(parsed) ? parsed : [];
  for (const [docIndex, doc] of docs.entries()) {
    const locate = makeLocator(file, doc, lines);
    const yamlProblems = [...doc.errors, ...doc.warnings];
    for (const problem of yamlProblems) {
      const { line, col } = lines.linePos(problem.pos[0]);
      yield {
        diagnostic: {
          severity: 'error',
          rule: 'yaml-syntax',
          file,
          line,
          col,
          message: (problem.message.split('\n')[0] ?? problem.message).replace(
            / at line \d+, column \d+:?$/,
            '',
          ),
          hint:
            problem.code === 'DUPLICATE_KEY' ? 'each key may appear once per mapping' : 'fix the YAML syntax',
        },
      };
    }
    if (yamlProblems.length > 0) continue;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIASES });
    } catch (err) {
      yield {
        diagnostic: {
          severity: 'error',
          rule: 'yaml-syntax',
          ...locate([]),
          message: err instanceof Error ? err.message : String(err),
          hint: `aliases may expand at most ${MAX_ALIASES} times per document`,
        },
      };
      continue;
    }
    // An empty document (a trailing `---`, or only comments) parses as null: nothing to load.
    if (value === null || value === undefined) continue;
    yield { value, locate, docIndex };
  }
}

/** Collects what loading documents found: resources, problems, and ids of rejected documents. */
interface LoadSink {
  resources: LoadedResource[];
  diagnostics: Diagnostic[];
  rejected: string[];
}

/**
 * Checks one parsed document (any JSON-like value) and, when it is a valid resource, adds it to
 * `out`; every problem becomes a diagnostic located with `locate`. Shared by YAML text and
 * in-memory documents (a control-plane snapshot), so both get the same checks.
 */
function loadValue(
  value: unknown,
  file: string,
  docIndex: number,
  locate: LoadedResource['locate'],
  out: LoadSink,
): void {
  const { diagnostics } = out;
  const at = (fieldPath: (string | number)[], key = false) => locate(fieldPath, key);

  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    diagnostics.push({
      severity: 'error',
      rule: 'not-a-resource',
      ...at([]),
      message: 'a document must be a mapping with apiVersion, kind, metadata and spec',
      expected: 'a mapping',
      found: describeValue(value),
    });
    return;
  }
  const record = value as Record<string, unknown>;
  const id = resourceId(record);
  const base = { severity: 'error' as const, file, ...(id !== undefined && { resource: id }) };

  if (record.apiVersion !== API_VERSION) {
    diagnostics.push({
      ...base,
      rule: record.apiVersion === undefined ? 'missing-field' : 'unknown-api-version',
      ...at(['apiVersion']),
      path: 'apiVersion',
      message:
        record.apiVersion === undefined ? 'missing required field "apiVersion"' : 'unsupported apiVersion',
      expected: `"${API_VERSION}"`,
      found: describeValue(record.apiVersion),
      hint: `this release reads ${API_VERSION}`,
    });
  }
  const kind = record.kind;
  if (typeof kind !== 'string' || !(KINDS as string[]).includes(kind)) {
    const suggestion = typeof kind === 'string' ? closestMatch(kind, KINDS) : undefined;
    const local = kind === 'ProxyBootstrap';
    diagnostics.push({
      ...base,
      rule: kind === undefined ? 'missing-field' : 'unknown-kind',
      ...at(['kind']),
      path: 'kind',
      message: kind === undefined ? 'missing required field "kind"' : 'unknown kind',
      expected: `one of ${listOr(KINDS)}`,
      found: describeValue(kind),
      ...(local
        ? {
            hint: 'a ProxyBootstrap is a process’s own start-up file, not a mesh resource: keep it out of resource folders and check it with `isthmus proxy --check -c FILE`',
          }
        : suggestion !== undefined && { hint: `did you mean "${suggestion}"?` }),
    });
    return;
  }
  const problems = validateDocument(kind as Kind, value).filter(
    (p) => !(p.path.length === 1 && p.path[0] === 'apiVersion'),
  );
  for (const p of problems) {
    diagnostics.push({
      ...base,
      rule: p.rule,
      ...at(p.path, p.atKey),
      path: formatPath(p.path),
      message: p.message,
      ...(p.expected !== undefined && { expected: p.expected }),
      ...(p.found !== undefined && { found: p.found }),
      ...(p.hint !== undefined && { hint: p.hint }),
    });
  }
  if (problems.length > 0 || record.apiVersion !== API_VERSION) {
    if (id !== undefined) out.rejected.push(id);
    return;
  }
  out.resources.push({ resource: value as AnyResource, file, docIndex, locate });
}

/**
 * Parses one file's text into resources. Never throws for bad input: every problem becomes a
 * diagnostic, and a document with any error yields no resource.
 */
export function loadText(text: string, file: string): LoadResult {
  const out: LoadSink = { resources: [], diagnostics: [], rejected: [] };
  for (const parsed of parseYaml(text, file)) {
    if ('diagnostic' in parsed) out.diagnostics.push(parsed.diagnostic);
    else loadValue(parsed.value, file, parsed.docIndex, parsed.locate, out);
  }
  return { ...out, files: [file] };
}

/**
 * Checks in-memory documents (e.g. the resources of a control-plane snapshot) exactly as
 * `loadText` checks a file's. There is no source text, so every problem and every resource is
 * located at `ORIGIN#INDEX` (the 0-based index of the document in `docs`), line 1.
 */
export function loadDocuments(docs: readonly unknown[], origin: string): LoadResult {
  const out: LoadSink = { resources: [], diagnostics: [], rejected: [] };
  docs.forEach((value, docIndex) => {
    const file = `${origin}#${docIndex}`;
    loadValue(value, file, docIndex, () => ({ file, line: 1, col: 1 }), out);
  });
  return { ...out, files: [origin] };
}

function isYamlFile(name: string): boolean {
  return name.endsWith('.yaml') || name.endsWith('.yml');
}

async function collectFiles(target: string, diagnostics: Diagnostic[]): Promise<string[]> {
  let info;
  try {
    info = await stat(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    diagnostics.push({
      severity: 'error',
      rule: 'io',
      file: target,
      line: 1,
      col: 1,
      message: code === 'ENOENT' ? 'no such file or directory' : `cannot read: ${(err as Error).message}`,
    });
    return [];
  }
  if (info.isFile()) return [target];
  if (!info.isDirectory()) return [];
  const out: string[] = [];
  const entries = await readdir(target, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue; // hidden files and folders (.git, editor swap files)
    const full = path.join(target, entry.name);
    if (entry.isDirectory()) out.push(...(await collectFiles(full, diagnostics)));
    else if (entry.isFile() && isYamlFile(entry.name)) out.push(full);
  }
  return out;
}

/**
 * Loads every `.yaml`/`.yml` file below the given paths (files named directly are read whatever
 * their extension). Files are read in a stable, sorted order so diagnostics and diffs are stable.
 */
export async function loadPaths(paths: readonly string[]): Promise<LoadResult> {
  const diagnostics: Diagnostic[] = [];
  const files: string[] = [];
  for (const p of paths) {
    const found = await collectFiles(p, diagnostics);
    if (found.length === 0 && diagnostics.every((d) => d.file !== p)) {
      diagnostics.push({
        severity: 'warning',
        rule: 'no-files',
        file: p,
        line: 1,
        col: 1,
        message: 'no .yaml or .yml files found here',
      });
    }
    for (const f of found) if (!files.includes(f)) files.push(f);
  }
  const resources: LoadedResource[] = [];
  const rejected: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      const info = await stat(file);
      if (info.size > MAX_FILE_BYTES) {
        diagnostics.push({
          severity: 'error',
          rule: 'file-too-large',
          file,
          line: 1,
          col: 1,
          message: `file is ${info.size} bytes; resource files may be at most ${MAX_FILE_BYTES} bytes`,
          hint: 'split it into several files',
        });
        continue;
      }
      const bytes = await readFile(file);
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (err) {
      diagnostics.push({
        severity: 'error',
        rule: 'io',
        file,
        line: 1,
        col: 1,
        message:
          err instanceof TypeError
            ? 'file is not valid UTF-8 text'
            : `cannot read: ${(err as Error).message}`,
      });
      continue;
    }
    const result = loadText(text, file);
    resources.push(...result.resources);
    diagnostics.push(...result.diagnostics);
    rejected.push(...result.rejected);
  }
  diagnostics.sort(compareDiagnostics);
  return { resources, diagnostics, files, rejected };
}
