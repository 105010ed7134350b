import { request } from 'undici';
import { IsthmusError } from '../core/errors.js';

/**
 * One JSON call to an HTTP API of the lab's (its control API, the link emulator's): an
 * unreachable server is an IsthmusError naming it (and `hint`), a non-2xx answer one quoting the
 * server's message.
 */
export async function callJson<T>(
  baseUrl: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  options: { body?: unknown; timeoutMs: number; what: string; hint?: string },
): Promise<T> {
  let res;
  try {
    res = await request(`${baseUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(options.body !== undefined && { body: JSON.stringify(options.body) }),
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  } catch (err) {
    throw new IsthmusError(
      'ISTHMUS_E_IO',
      `cannot reach ${options.what} at ${baseUrl}${options.hint ? ` (${options.hint})` : ''}: ${(err as Error).message}`,
    );
  }
  const text = await res.body.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    throw new IsthmusError(
      'ISTHMUS_E_IO',
      `${options.what} at ${baseUrl} answered ${res.statusCode} with non-JSON`,
    );
  }
  if (res.statusCode >= 300) {
    const message =
      (json as { message?: string; error?: string } | undefined)?.message ??
      (json as { error?: string } | undefined)?.error ??
      text.slice(0, 300);
    throw new IsthmusError(
      res.statusCode === 404
        ? 'ISTHMUS_E_NOT_FOUND'
        : res.statusCode === 400
          ? 'ISTHMUS_E_USAGE'
          : 'ISTHMUS_E_IO',
      `${options.what}: ${method} ${path} answered ${res.statusCode}: ${message}`,
    );
  }
  return json as T;
}
