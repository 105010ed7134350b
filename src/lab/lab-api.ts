import http from 'node:http';
import { isIsthmusError } from '../core/errors.js';
import { splitHostPort } from '../dataplane/address.js';
import { parseFault } from '../chaos/drill/spec.js';
import type { Lab } from './lab.js';

/**
 * The running lab's control API (what `isthmus lab fault|heal|status` and drills against a
 * running lab use):
 *   GET    /v1/lab                      topology, processes, active faults
 *   POST   /v1/faults {id?, fault}      inject a fault (the drill spec's fault syntax) → 201 {id}
 *   DELETE /v1/faults/ID                remove one
 *   POST   /v1/heal {restore?: bool}    remove every fault (and restart what is down)
 *   GET    /v1/heal                     is the network whole again?
 *   POST   /v1/processes/NAME/kill|restart
 */
export async function serveLabApi(
  lab: Lab,
  listen: string,
): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    void handle(lab, req, res).catch((err: unknown) => {
      const e = err as Error;
      const status = isIsthmusError(e)
        ? e.code === 'ISTHMUS_E_NOT_FOUND'
          ? 404
          : e.code === 'ISTHMUS_E_CONFLICT'
            ? 409
            : e.code === 'ISTHMUS_E_USAGE' || e.code === 'ISTHMUS_E_INVALID_VALUE'
              ? 400
              : 500
        : 500;
      send(res, status, { error: isIsthmusError(e) ? e.code : 'internal', message: e.message });
    });
  });
  const { host, port } = splitHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as { address: string; port: number };
  return {
    address: `${a.address}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  let text = '';
  for await (const chunk of req) {
    text += String(chunk);
    if (text.length > 64 * 1024) throw badRequest('the body is over 64 KiB');
  }
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRequest(`the body is not JSON: ${(err as Error).message}`);
  }
}

class BadRequest extends Error {}
const badRequest = (m: string) => new BadRequest(m);

async function handle(lab: Lab, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://lab');
  const parts = url.pathname.split('/').filter(Boolean);
  const route = `${req.method} /${parts.slice(0, 2).join('/')}`;
  try {
    switch (route) {
      case 'GET /v1/lab':
        return send(res, 200, lab.describe());
      case 'POST /v1/faults': {
        const body = (await readJson(req)) as { id?: unknown; fault?: unknown };
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw badRequest('the body must be a JSON object {"fault": {...}}');
        if (body.id !== undefined && (typeof body.id !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(body.id)))
          throw badRequest('"id" must be 1–64 letters, digits, dots, dashes or underscores');
        const parsed = parseFault(body.fault, 'fault');
        if (!parsed.ok) throw badRequest(parsed.error);
        const id = await lab.applyFault(parsed.fault, body.id);
        return send(res, 201, { id, active: lab.faults });
      }
      case 'DELETE /v1/faults': {
        const id = decodeURIComponent(parts[2] ?? '');
        await lab.removeFault(id);
        return send(res, 200, { removed: id, active: lab.faults });
      }
      case 'POST /v1/heal': {
        const body = (await readJson(req)) as { restore?: unknown };
        if (body.restore !== undefined && typeof body.restore !== 'boolean')
          throw badRequest('"restore" must be true or false');
        await lab.healAll({ restore: body.restore !== false });
        return send(res, 200, await lab.verifyHealed());
      }
      case 'GET /v1/heal':
        return send(res, 200, await lab.verifyHealed());
      case 'POST /v1/processes': {
        const name = decodeURIComponent(parts[2] ?? '');
        const action = parts[3];
        if (!lab.supervisor.has(name))
          return send(res, 404, { error: 'not-found', message: `no lab process "${name}"` });
        if (action === 'kill') await lab.supervisor.kill(name, 'SIGKILL');
        else if (action === 'restart') await lab.supervisor.restart(name);
        else throw badRequest(`unknown action "${action ?? ''}": use kill or restart`);
        return send(res, 200, { name, processes: lab.supervisor.status().filter((p) => p.name === name) });
      }
      default:
        return send(res, 404, {
          error: 'not-found',
          message:
            'lab API: GET /v1/lab, POST /v1/faults, DELETE /v1/faults/ID, POST|GET /v1/heal, POST /v1/processes/NAME/kill|restart',
        });
    }
  } catch (err) {
    if (err instanceof BadRequest) return send(res, 400, { error: 'bad-request', message: err.message });
    throw err;
  }
}
