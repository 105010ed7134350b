import { request } from 'undici';
import { IsthmusError } from '../core/errors.js';

/** Client of a running lab's control API (src/lab/lab-api.ts). */
export class LabClient {
  constructor(readonly baseUrl: string) {}

  async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res;
    try {
      res = await request(`${this.baseUrl}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body !== undefined && { body: JSON.stringify(body) }),
        headersTimeout: 120_000,
        bodyTimeout: 120_000,
      });
    } catch (err) {
      throw new IsthmusError(
        'ISTHMUS_E_IO',
        `cannot reach the lab at ${this.baseUrl} (is \`isthmus lab\` running?): ${(err as Error).message}`,
      );
    }
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new IsthmusError(
        'ISTHMUS_E_IO',
        `the lab at ${this.baseUrl} answered ${res.statusCode} with non-JSON`,
      );
    }
    if (res.statusCode >= 300) {
      const message = (json as { message?: string }).message ?? text;
      throw new IsthmusError(
        res.statusCode === 404
          ? 'ISTHMUS_E_NOT_FOUND'
          : res.statusCode === 400
            ? 'ISTHMUS_E_USAGE'
            : 'ISTHMUS_E_IO',
        `lab: ${message}`,
      );
    }
    return json as T;
  }
}
