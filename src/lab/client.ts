import { callJson } from './http-json.js';

/** Client of a running lab's control API (src/lab/lab-api.ts). */
export class LabClient {
  constructor(readonly baseUrl: string) {}

  call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    // Faults and heals restart processes: generous timeouts.
    return callJson<T>(this.baseUrl, method, path, {
      body,
      timeoutMs: 120_000,
      what: 'the lab',
      hint: 'is `isthmus lab` running?',
    });
  }
}
