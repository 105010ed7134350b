/**
 * Helpers for writing YAML fixtures inline in tests, so that the line and column numbers a test
 * expects can be read straight off the fixture.
 */

/**
 * Template tag for inline YAML: drops the first line when it is blank (the newline after the
 * backtick) and the last line when it is only indentation, removes the indentation common to all
 * non-blank lines, and ends the text with exactly one newline. Line 1 of the result is the first
 * line of YAML written in the template.
 */
export function yamlDoc(strings: TemplateStringsArray, ...values: unknown[]): string {
  let text = strings[0] ?? '';
  values.forEach((value, i) => {
    text += String(value) + (strings[i + 1] ?? '');
  });
  const lines = text.split('\n');
  if (lines.length > 1 && (lines[0] as string).trim() === '') lines.shift();
  if (lines.length > 0 && (lines[lines.length - 1] as string).trim() === '') lines.pop();
  const indents = lines
    .filter((l) => l.trim() !== '')
    .map((l) => (/^ */.exec(l) as RegExpExecArray)[0].length);
  const common = indents.length > 0 ? Math.min(...indents) : 0;
  return lines.map((l) => l.slice(common)).join('\n') + '\n';
}

/** The document header every resource starts with (4 lines: apiVersion, kind, metadata, name). */
export function header(kind: string, name: string): string {
  return `apiVersion: isthmus.dev/v1alpha1\nkind: ${kind}\nmetadata:\n  name: ${name}\n`;
}

/**
 * The text of `text` from 1-based `line` and `col` to the end of that line, or undefined when the
 * position is not inside the text (a column one past the end of a line is inside: it is empty).
 * Lines are split on `\n` and columns count UTF-16 code units, as the loader's positions do.
 */
export function textAt(text: string, line: number, col: number): string | undefined {
  const lines = text.split('\n');
  const l = lines[line - 1];
  if (l === undefined || col < 1 || col > l.length + 1) return undefined;
  return l.slice(col - 1);
}

/** Splits a path as the loader formats it (`spec.routes[0].match["odd key"]`) into segments. */
export function parseFieldPath(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  const re = /^(?:\.?([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\])/;
  let rest = path;
  while (rest !== '') {
    const m = re.exec(rest);
    if (!m) throw new Error(`cannot parse field path ${JSON.stringify(path)} at ${JSON.stringify(rest)}`);
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else out.push(JSON.parse(m[3] as string) as string);
    rest = rest.slice(m[0].length);
  }
  return out;
}

/**
 * Whether `path` names something in `value` (own properties only, so `constructor` or
 * `__proto__` are found only when the document has them). A numeric segment also matches a
 * mapping key spelled with digits.
 */
export function hasPath(value: unknown, path: readonly (string | number)[]): boolean {
  let cur: unknown = value;
  for (const seg of path) {
    if (Array.isArray(cur)) {
      if (typeof seg !== 'number' || seg >= cur.length) return false;
      cur = cur[seg];
    } else if (cur !== null && typeof cur === 'object') {
      if (!Object.hasOwn(cur, String(seg))) return false;
      cur = (cur as Record<string, unknown>)[String(seg)];
    } else {
      return false;
    }
  }
  return true;
}
