import type { Diagnostic } from '../model/diagnostics.js';
import type { MeshDiff } from '../model/diff.js';
import { styler, type Styler } from '../core/style.js';

// Terminal styling lives in core (the drill report uses it too); on only for terminals: useColor.
export { styler, type Styler };

export function useColor(stream: NodeJS.WriteStream): boolean {
  return stream.isTTY === true && process.env.NO_COLOR === undefined && process.env.TERM !== 'dumb';
}

/** `file:line:col: error: Kind/name field: message` and indented details, one block per problem. */
export function formatDiagnostic(d: Diagnostic, s: Styler): string {
  const severity = d.severity === 'error' ? s.red('error') : s.yellow('warning');
  const where = [d.resource, d.path].filter(Boolean).join(' ');
  const lines = [
    `${s.bold(`${d.file}:${d.line}:${d.col}`)}: ${severity}: ${where ? `${s.cyan(where)}: ` : ''}${d.message}`,
  ];
  const detail = (label: string, value: string | undefined) => {
    if (value !== undefined) lines.push(`    ${s.dim(label.padEnd(9))}${value}`);
  };
  detail('expected', d.expected);
  detail('found', d.found);
  detail('hint', d.hint);
  for (const r of d.related ?? []) detail('see', `${r.file}:${r.line}:${r.col}: ${r.message}`);
  return lines.join('\n');
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function formatValue(value: unknown): string {
  if (typeof value === 'string') return /^[\w./:@-]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value);
}

export function formatDiff(diff: MeshDiff, s: Styler): string {
  const lines: string[] = [];
  for (const change of diff.changes) {
    const id = `${change.kind}/${change.name}`;
    if (change.op === 'add') lines.push(s.green(`+ ${id}`));
    else if (change.op === 'remove') lines.push(s.red(`- ${id}`));
    else {
      lines.push(s.yellow(`~ ${id}`));
      for (const f of change.fields) {
        if (!('old' in f)) lines.push(s.green(`    + ${f.path}: ${formatValue(f.new)}`));
        else if (!('new' in f)) lines.push(s.red(`    - ${f.path}: ${formatValue(f.old)}`));
        else lines.push(`    ~ ${f.path}: ${formatValue(f.old)} → ${formatValue(f.new)}`);
      }
    }
  }
  const { add, change, remove } = diff.summary;
  lines.push(
    add + change + remove === 0
      ? 'No changes.'
      : `Plan: ${add} to add, ${change} to change, ${remove} to remove.`,
  );
  return lines.join('\n');
}
