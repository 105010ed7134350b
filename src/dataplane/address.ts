import { IsthmusError } from '../core/errors.js';

/** Splits `HOST:PORT` (IPv6 in brackets). */
export function splitHostPort(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  const host = text.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(text.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new IsthmusError(
      'ISTHMUS_E_INVALID_VALUE',
      `invalid address ${JSON.stringify(text)}: write HOST:PORT`,
    );
  return { host, port };
}
