/**
 * Stable ids of every problem `isthmus validate` reports. Tools may match on them; docs/cli.md
 * lists them and a test keeps the two in step.
 */
export const RULES = {
  io: 'A path could not be read.',
  'no-files': 'A directory holds no .yaml or .yml files (warning).',
  'file-too-large': 'A file is larger than the 4 MiB limit.',
  'yaml-syntax': 'The YAML is malformed (including duplicate keys and over-used aliases).',
  'not-a-resource': 'A document is not a mapping.',
  'unknown-api-version': 'apiVersion is not one this release reads.',
  'unknown-kind': 'kind is not a known resource kind.',
  'unknown-field': 'A field that the schema does not define (often a typo).',
  'missing-field': 'A required field is absent.',
  'wrong-type': 'A value has the wrong type (e.g. a bare number where a duration is expected).',
  'invalid-duration': 'A duration without a valid unit.',
  'invalid-size': 'A size without a valid unit.',
  'invalid-text': 'Text that does not match its required form (names, paths, hosts).',
  'invalid-value': 'A value outside the accepted set.',
  'invalid-key': 'A map key that is not a valid name.',
  'invalid-length': 'A list or text that is too short or too long.',
  'invalid-choice': 'Not exactly one of several alternative fields is set.',
  'out-of-range': 'A number, duration or size outside its bounds.',
  'duplicate-item': 'A list holds the same item twice.',
  'duplicate-name': 'Two resources of a kind, or two zones, ports or routes, share a name.',
  'duplicate-mesh': 'More than one Mesh resource.',
  'duplicate-port': 'A service declares a port number twice.',
  'duplicate-destination': 'Two ExternalServices declare the same host and port.',
  'dangling-reference': 'A reference to a region, service or route that does not exist.',
  'self-reference': 'A region lists a latency hint to itself.',
  'unused-field': 'A targetRef field that means nothing for its kind.',
  'unreachable-route': 'A route shadowed by an earlier one (warning).',
  conflict: 'Two policies at the same level for the same target set the same field.',
  'inconsistent-settings':
    'Merged settings contradict each other (error), or one silently caps another (warning).',
  'missing-home-region': 'Strong consistency on a service without a home region.',
  'not-per-route': 'A per-destination setting in a route-level policy, where it has no effect (warning).',
  invalid: 'Any other schema violation.',
} as const;

export type Rule = keyof typeof RULES;

/** A problem found in mesh resources, located in its source file. */
export interface Diagnostic {
  severity: 'error' | 'warning';
  /** Stable rule id (see RULES). */
  rule: Rule;
  file: string;
  /** 1-based line and column of the offending key or value. */
  line: number;
  col: number;
  /** `Kind/name` of the resource, when the problem is inside one. */
  resource?: string;
  /** Field path within the resource, e.g. `spec.retries.maxAttempts`. */
  path?: string;
  message: string;
  expected?: string;
  found?: string;
  hint?: string;
  /** Other places the problem involves (the first of two duplicates, a conflicting policy). */
  related?: { file: string; line: number; col: number; message: string }[];
}

export interface Position {
  file: string;
  line: number;
  col: number;
}

export function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  return (
    a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col || a.message.localeCompare(b.message)
  );
}

/** A short human description of a found value, for `found:` lines. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return `the text ${JSON.stringify(shown)}`;
  }
  if (typeof value === 'number') return `the number ${value}`;
  if (typeof value === 'boolean') return `the boolean ${value}`;
  return typeof value;
}
