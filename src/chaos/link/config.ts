import { parse as parseYaml, YAMLParseError } from 'yaml';
import { IsthmusError } from '../../core/errors.js';
import { closestMatch } from '../../core/text.js';
import { splitHostPort, type LinkProxyConfig } from './proxy.js';
import { parseToxic, type Toxic } from './toxics.js';

/** A proxy as given to populate or in a config file: a link and, optionally, its toxics. */
export interface LinkProxySpec extends LinkProxyConfig {
  /** Toxics to set on the link (Isthmus extension to Toxiproxy's populate and -config). */
  toxics?: Toxic[];
}

const PROXY_FIELDS = ['name', 'listen', 'upstream', 'enabled', 'from', 'to', 'purpose', 'toxics'];
/** Region labels follow region names; `global` is one too. */
const LABEL_RE = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;

function invalid(where: string, message: string): IsthmusError {
  return new IsthmusError('ISTHMUS_E_INVALID_VALUE', `${where}: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function optionalLabel(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || !LABEL_RE.test(value))
    throw invalid(
      where,
      `${JSON.stringify(value)} is not a label (lowercase letters, digits, -; e.g. eu-west)`,
    );
  return value;
}

/**
 * Validates one proxy. Unknown fields are ignored as Toxiproxy does (its clients may send more),
 * unless `strict` (config files and the Isthmus endpoints, where they are likely typos).
 * `listen` defaults to 127.0.0.1:0 (any free port), where Toxiproxy would pick one too.
 */
export function parseProxySpec(value: unknown, where: string, strict = false): LinkProxySpec {
  if (!isObject(value)) throw invalid(where, 'a proxy must be an object with name and upstream');
  if (strict)
    for (const k of Object.keys(value))
      if (!PROXY_FIELDS.includes(k)) {
        const guess = closestMatch(k, PROXY_FIELDS);
        throw invalid(
          `${where}.${k}`,
          `unknown field${guess ? `; did you mean "${guess}"?` : ` (fields: ${PROXY_FIELDS.join(', ')})`}`,
        );
      }
  const { name, listen = '127.0.0.1:0', upstream, enabled } = value;
  if (typeof name !== 'string' || name === '' || name.includes('/'))
    throw invalid(
      `${where}.name`,
      name === undefined ? 'missing required field' : 'must be a non-empty string without "/"',
    );
  const at = `${where} (${name})`;
  if (typeof upstream !== 'string') throw invalid(`${at}.upstream`, 'missing required field (HOST:PORT)');
  if (typeof listen !== 'string') throw invalid(`${at}.listen`, 'must be HOST:PORT');
  splitHostPort(upstream, `${at}.upstream`);
  splitHostPort(listen, `${at}.listen`);
  if (enabled !== undefined && typeof enabled !== 'boolean')
    throw invalid(`${at}.enabled`, 'must be true or false');
  const spec: LinkProxySpec = { name, listen, upstream, enabled: enabled ?? true };
  const from = optionalLabel(value.from, `${at}.from`);
  const to = optionalLabel(value.to, `${at}.to`);
  const purpose = optionalLabel(value.purpose, `${at}.purpose`);
  if (from !== undefined) spec.from = from;
  if (to !== undefined) spec.to = to;
  if (purpose !== undefined) spec.purpose = purpose;
  if (value.toxics !== undefined && value.toxics !== null) {
    if (!Array.isArray(value.toxics)) throw invalid(`${at}.toxics`, 'must be a list of toxics');
    const toxics = value.toxics.map((t, i) => parseToxic(t, `${at}.toxics[${i}]`, 0, strict));
    const seen = new Set<string>();
    for (const t of toxics) {
      if (seen.has(t.name))
        throw invalid(`${at}.toxics`, `two toxics are named "${t.name}"; give one a name`);
      seen.add(t.name);
    }
    spec.toxics = toxics;
  }
  return spec;
}

/** Validates a list of proxies (populate's body, a config file): all or nothing. */
export function parseProxySpecs(value: unknown, where: string, strict = false): LinkProxySpec[] {
  if (!Array.isArray(value)) throw invalid(where, 'must be a list of proxies');
  const specs = value.map((v, i) => parseProxySpec(v, `${where}[${i}]`, strict));
  const names = new Set<string>();
  for (const [i, s] of specs.entries()) {
    if (names.has(s.name)) throw invalid(`${where}[${i}].name`, `"${s.name}" appears twice`);
    names.add(s.name);
  }
  return specs;
}

/**
 * Parses the text of `isthmus link --config FILE`: a JSON or YAML list of proxies (Toxiproxy's
 * `-config` format), each optionally with `toxics`; `{proxies: [...]}` is accepted too.
 */
export function parseLinkConfigText(text: string, file: string): LinkProxySpec[] {
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    if (err instanceof YAMLParseError) throw new IsthmusError('ISTHMUS_E_YAML', `${file}: ${err.message}`);
    throw err;
  }
  if (isObject(value) && Array.isArray(value.proxies)) value = value.proxies;
  return parseProxySpecs(value, file, true);
}
