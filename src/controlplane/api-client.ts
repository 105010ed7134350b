import { request } from 'undici';
import { IsthmusError, type ErrorCode, ErrorCodes } from '../core/errors.js';

/**
 * Client of the global control plane's HTTP API (used by `isthmus apply/get/history/rollback/
 * status`). Writes that reach a follower are answered 421 with the leader's URL; the client
 * follows that once. Every failure is an IsthmusError whose message says what to do.
 */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly options: { timeoutMs?: number; userAgent?: string } = {},
  ) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new IsthmusError(
        'ISTHMUS_E_USAGE',
        `--server "${baseUrl}" is not a URL (e.g. http://127.0.0.1:7400)`,
      );
    }
    if (url.protocol !== 'http:')
      throw new IsthmusError('ISTHMUS_E_USAGE', `--server "${baseUrl}" must be an http:// URL`);
  }

  get<T>(path: string): Promise<T> {
    return this.#call<T>('GET', path, undefined, this.baseUrl, true);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.#call<T>('POST', path, body, this.baseUrl, true);
  }

  async #call<T>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    base: string,
    follow: boolean,
  ): Promise<T> {
    const url = new URL(path, base);
    let res;
    try {
      res = await request(url, {
        method,
        headers: {
          'user-agent': this.options.userAgent ?? 'isthmus-cli',
          ...(body !== undefined && { 'content-type': 'application/json' }),
        },
        ...(body !== undefined && { body: JSON.stringify(body) }),
        headersTimeout: this.options.timeoutMs ?? 30_000,
        bodyTimeout: this.options.timeoutMs ?? 30_000,
      });
    } catch (err) {
      throw new IsthmusError(
        'ISTHMUS_E_IO',
        `cannot reach the global control plane at ${base}: ${(err as Error).message}. Is \`isthmus global\` running there? (set --server or ISTHMUS_SERVER)`,
      );
    }
    const text = await res.body.text();
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new IsthmusError(
        'ISTHMUS_E_IO',
        `${url.href} answered ${res.statusCode} with a body that is not JSON; is it an Isthmus global control plane?`,
      );
    }
    if (res.statusCode === 421 && follow && typeof json.leader === 'string' && json.leader !== base)
      return this.#call<T>(method, path, body, json.leader, false);
    if (res.statusCode >= 400) {
      const code =
        typeof json.error === 'string' && json.error in ErrorCodes
          ? (json.error as ErrorCode)
          : 'ISTHMUS_E_IO';
      const error = new ApiCallError(
        code,
        typeof json.message === 'string' ? json.message : `HTTP ${res.statusCode}`,
        res.statusCode,
        json,
      );
      throw error;
    }
    return json as T;
  }
}

/** An error answer from the API, with its body (e.g. the diagnostics of a refused apply). */
export class ApiCallError extends IsthmusError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(code, message);
  }
}
