/** A problem found in mesh resources, located in its source file. */
export interface Diagnostic {
  severity: 'error' | 'warning';
  /** Stable rule id, e.g. `unknown-field`, `out-of-range`, `dangling-reference`. */
  rule: string;
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
