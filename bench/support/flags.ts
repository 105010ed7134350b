/** Command-line handling shared by the benchmarks. */

/** A bad flag or environment value: the benchmark prints the message and its usage, exit 2. */
export class UsageError extends Error {}

/**
 * A whole number from `--flag` or, when absent, the environment variable `env`; `fallback` when
 * neither is set. A trailing `s` is accepted (durations are given in seconds: `8` or `8s`).
 */
export function intFlag(
  flag: string,
  value: string | undefined,
  env: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const text = value ?? process.env[env];
  if (text === undefined || text === '') return fallback;
  const n = Number(text.replace(/s$/, ''));
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(
      `--${flag} (${env}) must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`,
    );
  return n;
}

/** The flags both load benchmarks (bench:proxy, bench:telemetry) take, for `parseArgs`. */
export const LOAD_FLAGS = {
  duration: { type: 'string' },
  warmup: { type: 'string' },
  connections: { type: 'string' },
  rounds: { type: 'string' },
  save: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/**
 * `parse(argv)`, or the exit code once `usage` is printed: 2 after a bad flag (a
 * {@link UsageError}, or parseArgs's own error for an unknown flag or a missing value), 0 for
 * `--help` (`parse` returns undefined).
 */
export function parseCommandLine<O extends object>(
  parse: (argv: string[]) => O | undefined,
  usage: string,
  argv = process.argv.slice(2),
): O | number {
  let options: O | undefined;
  try {
    options = parse(argv);
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${usage}`);
    return 2;
  }
  if (!options) {
    console.log(usage);
    return 0;
  }
  return options;
}
