import { InvalidArgumentError } from 'commander';
import { parseDurationMs } from '../core/units.js';

/**
 * Parsers for command-line option values, shared by every command. Each throws commander's
 * InvalidArgumentError naming the bad value, so the CLI exits 2 with a clear message.
 */

export const REGION_RE = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;

/** HOST:PORT, with an IPv6 host in brackets. */
export function hostPort(text: string): string {
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(text) || Number(text.split(':').pop()) > 65535)
    throw new InvalidArgumentError(`"${text}" is not HOST:PORT`);
  return text;
}

/** An http:// URL. */
export function httpUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new InvalidArgumentError(`"${text}" is not a URL (e.g. http://127.0.0.1:4318)`);
  }
  if (u.protocol !== 'http:') throw new InvalidArgumentError(`"${text}" must be an http:// URL`);
  return text;
}

/** A comma-separated list of http:// URLs (at least one). */
export function urlList(text: string): string[] {
  const urls = text
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  for (const u of urls) httpUrl(u);
  if (urls.length === 0) throw new InvalidArgumentError('give at least one URL');
  return urls;
}

/** A duration with a unit (`250ms`, `2s`, `1m30s`), as milliseconds. */
export function duration(text: string): number {
  try {
    return parseDurationMs(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** A non-negative safe integer. */
export function wholeNumber(text: string, what = 'a whole number'): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError(`"${text}" is not ${what}`);
  return n;
}

/** A region name (lowercase letters, digits and dashes). */
export function regionName(text: string): string {
  if (!REGION_RE.test(text)) throw new InvalidArgumentError(`"${text}" is not a region name (e.g. eu-west)`);
  return text;
}
