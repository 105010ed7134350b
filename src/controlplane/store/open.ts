/**
 * Opens the store named by a URL, so a deployment chooses between the embedded file and an etcd
 * cluster with one setting.
 */
import path from 'node:path';
import { IsthmusError } from '../../core/errors.js';
import { EtcdKvStore } from './etcd.js';
import type { KvStore } from './kv.js';
import { SqliteKvStore } from './sqlite.js';

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Directory of `global.db` when the URL is `sqlite:` alone or absent. */
  dataDir?: string;
  /** Namespace prepended to every etcd key, default `/isthmus/` (a SQLite file is not shared, so it has none). */
  prefix?: string;
}

const ACCEPTED =
  'sqlite:PATH (relative to the working directory), sqlite: alone (DATA_DIR/global.db), ' +
  'etcd://HOST:PORT[,HOST:PORT...] or etcd+http://HOST:PORT[,...]';

/**
 * Opens a store:
 * - `sqlite:PATH` — a file of this process (relative paths from the working directory);
 *   `sqlite:` alone, or no URL at all — `DATA_DIR/global.db`;
 * - `etcd://HOST:PORT[,HOST:PORT...]` (or `etcd+http://…`) — a cluster over plain HTTP; the
 *   cluster is asked once now, so a wrong address fails at startup rather than at first use.
 */
export async function openStore(url: string | undefined, options: OpenStoreOptions = {}): Promise<KvStore> {
  const spec = url?.trim() ?? '';
  if (spec === '' || spec === 'sqlite:') {
    if (options.dataDir === undefined)
      throw new IsthmusError(
        'ISTHMUS_E_USAGE',
        `store ${spec === '' ? '(none given)' : 'sqlite:'} needs a data directory for global.db; give sqlite:PATH or a data directory`,
      );
    return SqliteKvStore.open(path.resolve(options.dataDir, 'global.db'));
  }
  if (spec.startsWith('sqlite:')) return SqliteKvStore.open(path.resolve(spec.slice('sqlite:'.length)));
  const etcd = /^(etcd|etcd\+http):\/\/(.*)$/i.exec(spec);
  if (etcd) {
    const endpoints = parseHosts(spec, etcd[2]!);
    const store = new EtcdKvStore({
      endpoints,
      ...(options.prefix !== undefined && { prefix: options.prefix }),
    });
    try {
      await store.revision();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }
  throw new IsthmusError('ISTHMUS_E_USAGE', `unknown store URL ${JSON.stringify(spec)}; use ${ACCEPTED}`);
}

/** `h1:2379,[::1]:2379,h3` → HTTP client URLs; a missing port is etcd's 2379. */
function parseHosts(spec: string, list: string): string[] {
  const hosts = list.replace(/\/+$/, '').split(',');
  return hosts.map((raw) => {
    const host = raw.trim();
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(host);
    const port = m?.[2] === undefined ? 2379 : Number(m[2]);
    if (!m || port < 1 || port > 65535)
      throw new IsthmusError(
        'ISTHMUS_E_USAGE',
        `store URL ${JSON.stringify(spec)}: ${JSON.stringify(host)} is not HOST:PORT; use ${ACCEPTED}`,
      );
    return `http://${m[1]}:${port}`;
  });
}
