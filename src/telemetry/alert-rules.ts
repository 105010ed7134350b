import { isMap, isScalar, isSeq, LineCounter, parseDocument, stringify, type Node } from 'yaml';
import { IsthmusError } from '../core/errors.js';
import { formatDurationMs, parseDurationMs } from '../core/units.js';
import { AlertExprError, parseExpr, SEVERITIES, type AlertRule, type Expr, type Severity } from './alerts.js';

/**
 * The `--alert-rules` file (docs/collector.md#alerts): YAML `rules: [{name, expr, for, severity,
 * summary}]`, every problem located as FILE:LINE:COL so a collector refuses to start with an
 * error that points at the line to fix. Also its translation to a Prometheus rules file.
 */

const RULE_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const FIELDS = ['name', 'expr', 'for', 'severity', 'summary'] as const;

export function parseAlertRules(text: string, file: string): AlertRule[] {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, version: '1.2' });
  const at = (node: Node | null | undefined, offset = 0): string => {
    const pos = lines.linePos((node?.range?.[0] ?? 0) + offset);
    return `${file}:${pos.line}:${pos.col}`;
  };
  const fail = (where: string, message: string): never => {
    throw new IsthmusError('ISTHMUS_E_INVALID_VALUE', `${where}: ${message}`);
  };
  const first = doc.errors[0];
  if (first) {
    const pos = lines.linePos(first.pos[0]);
    throw new IsthmusError(
      'ISTHMUS_E_YAML',
      `${file}:${pos.line}:${pos.col}: ${first.message.split('\n')[0] ?? ''}`,
    );
  }
  const root = doc.contents;
  if (!isMap(root)) return fail(at(root), 'an alert rules file is a mapping with a "rules" list');
  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (key !== 'rules') fail(at(pair.key), `unknown field "${key}" (only "rules")`);
  }
  const list = root.get('rules', true);
  if (!isSeq(list))
    return fail(at(list ?? root), '"rules" must be a list of {name, expr, for, severity, summary}');
  const names = new Set<string>();
  return list.items.map((item, index) => {
    if (!isMap(item)) return fail(at(item as Node), `rules[${index}] must be a mapping`);
    const field = (
      k: (typeof FIELDS)[number],
      required: boolean,
    ): { text: string; node: Node } | undefined => {
      const node = item.get(k, true) as Node | undefined;
      if (node === undefined) {
        if (required) fail(at(item), `rules[${index}].${k} is missing`);
        return undefined;
      }
      if (!isScalar(node) || typeof node.value !== 'string')
        return fail(at(node), `rules[${index}].${k} must be text`);
      return { text: node.value, node };
    };
    for (const pair of item.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      if (!(FIELDS as readonly string[]).includes(key))
        fail(at(pair.key as Node), `rules[${index}]: unknown field "${key}" (${FIELDS.join(', ')})`);
    }
    const name = field('name', true) as { text: string; node: Node };
    if (!RULE_NAME.test(name.text))
      fail(at(name.node), `rules[${index}].name "${name.text}" must be letters, digits and _`);
    if (names.has(name.text)) fail(at(name.node), `rules[${index}].name "${name.text}" is used twice`);
    names.add(name.text);
    const exprField = field('expr', true) as { text: string; node: Node };
    let expr: Expr;
    try {
      expr = parseExpr(name.text, exprField.text);
    } catch (err) {
      if (!(err instanceof AlertExprError)) throw err;
      // Plain scalars start at the node; quoted ones one character later.
      const quoted = isScalar(exprField.node) && exprField.node.type !== 'PLAIN' ? 1 : 0;
      return fail(at(exprField.node, quoted + err.column - 1), err.message);
    }
    const forField = field('for', false);
    let forMs = 0;
    if (forField) {
      try {
        forMs = parseDurationMs(forField.text);
      } catch (err) {
        fail(at(forField.node), `rules[${index}].for: ${(err as Error).message}`);
      }
    }
    const sev = field('severity', false);
    if (sev && !(SEVERITIES as readonly string[]).includes(sev.text))
      fail(at(sev.node), `rules[${index}].severity must be one of ${SEVERITIES.join(', ')}`);
    return {
      name: name.text,
      exprText: exprField.text,
      expr,
      forMs,
      severity: (sev?.text ?? 'warning') as Severity,
      summary: field('summary', false)?.text ?? name.text,
    };
  });
}

const q = (s: string) => JSON.stringify(s);

/** PromQL over the metrics proxies and collectors expose on /metrics, for the same condition. */
export function toPromQL(e: Expr, window = '5m'): string {
  switch (e.op) {
    case 'and':
    case 'or':
      // on(): the two sides carry different labels and would otherwise never match.
      return `(${toPromQL(e.left, window)}) ${e.op} on() (${toPromQL(e.right, window)})`;
    case 'stale':
      return `isthmus_collector_source_stale{source=${q(e.arg)}} == 1`;
    case 'gt': {
      const sel = `{service=${q(e.arg)}}`;
      switch (e.signal) {
        case 'p99_latency_ms':
          return `histogram_quantile(0.99, sum by (le, service) (rate(isthmus_hop_duration_seconds_bucket${sel}[${window}]))) * 1000 > ${e.threshold}`;
        case 'error_rate':
          return `sum by (service) (rate(isthmus_hop_errors_total${sel}[${window}])) / sum by (service) (rate(isthmus_hop_requests_total${sel}[${window}])) > ${e.threshold}`;
        case 'backlog_bytes':
          return `isthmus_collector_backlog_bytes > ${e.threshold}`;
        case 'backlog_growth':
          return `deriv(isthmus_collector_backlog_bytes[${window}]) * 60 > ${e.threshold}`;
        case 'stale':
          throw new Error('unreachable: stale is not compared');
      }
    }
  }
}

/** A Prometheus rules file (one group) holding the same rules. */
export function toPrometheusRules(rules: readonly AlertRule[], group = 'isthmus-collector'): string {
  return stringify(
    {
      groups: [
        {
          name: group,
          rules: rules.map((r) => ({
            alert: r.name,
            expr: toPromQL(r.expr),
            for: formatDurationMs(r.forMs),
            labels: { severity: r.severity },
            annotations: { summary: r.summary },
          })),
        },
      ],
    },
    { lineWidth: 0 },
  );
}
