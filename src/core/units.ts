import { IsthmusError } from './errors.js';

/**
 * Durations are written as strings with units, Go style: `250ms`, `5s`, `1m30s`, `2h`.
 * A bare number is never accepted, because "timeout: 5" is ambiguous between seconds and
 * milliseconds and that ambiguity is exactly the kind of bug that surfaces during an outage.
 */
export const DURATION_PATTERN = '^(?:\\d+(?:\\.\\d+)?(?:ms|s|m|h))+$';
const DURATION_RE = new RegExp(DURATION_PATTERN);
const DURATION_PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Sizes are strings with binary or decimal units: `512B`, `64KiB`, `16MiB`, `1GiB`, `10MB`. */
export const SIZE_PATTERN = '^\\d+(?:\\.\\d+)?(?:B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)$';
const SIZE_RE = /^(\d+(?:\.\d+)?)(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)$/;
const SIZE_UNIT_BYTES: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
  kB: 1000,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  TB: 1000 ** 4,
};

export function isDuration(text: string): boolean {
  return DURATION_RE.test(text);
}

/** Parses a duration string to milliseconds (fractions of a millisecond are kept). */
export function parseDurationMs(text: string): number {
  if (!DURATION_RE.test(text)) {
    throw new IsthmusError(
      'ISTHMUS_E_INVALID_VALUE',
      `invalid duration ${JSON.stringify(text)}: write a number with a unit, e.g. "250ms", "5s", "1m30s"`,
    );
  }
  let total = 0;
  for (const match of text.matchAll(DURATION_PART_RE)) {
    total += Number(match[1]) * (DURATION_UNIT_MS[match[2] as string] as number);
  }
  return total;
}

/** Formats milliseconds as the shortest exact duration string (`90000` → `1m30s`). */
export function formatDurationMs(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`cannot format duration ${ms}`);
  if (ms === 0) return '0s';
  if (!Number.isInteger(ms)) return `${ms}ms`;
  let rest = ms;
  let out = '';
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  if (rest > 0) out += `${rest}ms`;
  return out;
}

export function isSize(text: string): boolean {
  return SIZE_RE.test(text);
}

/** Parses a size string to bytes, rounding down to a whole byte. */
export function parseSizeBytes(text: string): number {
  const match = SIZE_RE.exec(text);
  if (!match) {
    throw new IsthmusError(
      'ISTHMUS_E_INVALID_VALUE',
      `invalid size ${JSON.stringify(text)}: write a number with a unit, e.g. "512KiB", "64MiB", "1GiB"`,
    );
  }
  return Math.floor(Number(match[1]) * (SIZE_UNIT_BYTES[match[2] as string] as number));
}

/** Formats bytes with the largest binary unit that divides it exactly (`67108864` → `64MiB`). */
export function formatSizeBytes(bytes: number): string {
  if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`cannot format size ${bytes}`);
  for (const unit of ['TiB', 'GiB', 'MiB', 'KiB'] as const) {
    const size = SIZE_UNIT_BYTES[unit] as number;
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}
