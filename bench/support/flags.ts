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
