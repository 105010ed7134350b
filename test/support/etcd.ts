/**
 * A real, single-member etcd for tests: free loopback ports, a temporary data directory, and
 * helpers to crash it and bring it back. Needs the `etcd` binary (Debian package `etcd-server`);
 * without it the tests that use this helper fail, with a message saying how to install it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestEtcd {
  /** Store URL for `openStore`, e.g. `etcd://127.0.0.1:40123`. */
  url: string;
  /** HTTP client URL, e.g. `http://127.0.0.1:40123`. */
  endpoint: string;
  /** Stops etcd (if running) and removes its data directory. Call it at the end. */
  stop(): Promise<void>;
  /** SIGKILLs etcd, as a crash would; the data directory stays, so `restart` can follow. */
  kill(): Promise<void>;
  /** Starts etcd again on the same ports and data directory (after `kill`). */
  restart(): Promise<void>;
}

/** Every etcd started by this process, killed if the process exits without stopping them. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** The etcd binary: $ETCD_BIN, else `etcd` on the PATH, else an error saying how to install it. */
export function etcdBinary(): string {
  const candidates = process.env.ETCD_BIN
    ? [process.env.ETCD_BIN]
    : [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/bin', '/usr/local/bin'].map(
        (d) => path.join(d, 'etcd'),
      );
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Try the next one.
    }
  }
  throw new Error(
    'etcd is not installed: these tests need a real etcd server. Install it with ' +
      '`apt-get install -y etcd-server` (Debian/Ubuntu) or set ETCD_BIN to the etcd binary.',
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function startEtcd(
  options: {
    /** Keep etcd's own request limits (1.5 MiB, 128 operations per transaction). */
    defaultLimits?: boolean;
  } = {},
): Promise<TestEtcd> {
  const bin = etcdBinary();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'isthmus-etcd-'));
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  let child: ChildProcess | undefined;
  let output = '';

  const launch = async () => {
    output = '';
    const c = spawn(
      bin,
      [
        '--name=test',
        `--data-dir=${path.join(dir, 'data')}`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=test=${peer}`,
        '--initial-cluster-state=new',
        // Room for applies of large meshes (one key per changed resource in one transaction);
        // docs/control-plane.md tells operators to do the same.
        ...(options.defaultLimits ? [] : ['--max-txn-ops=20000', '--max-request-bytes=67108864']),
        '--logger=zap',
        '--log-level=error',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = c;
    running.add(c);
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
    };
    c.stdout?.on('data', keep);
    c.stderr?.on('data', keep);
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    void exited.then(() => running.delete(c));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null)
        throw new Error(`etcd exited at startup (${c.exitCode ?? c.signalCode}):\n${output}`);
      if (await answers(endpoint)) return;
      if (Date.now() > deadline) {
        c.kill('SIGKILL');
        throw new Error(`etcd did not answer on ${endpoint} within 15 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const end = async (signal: NodeJS.Signals) => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(signal);
    await exited;
  };

  try {
    await launch();
  } catch (err) {
    await end('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `etcd://127.0.0.1:${clientPort}`,
    endpoint,
    async stop() {
      await end('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
    kill: () => end('SIGKILL'),
    restart: launch,
  };
}

/** Whether etcd answers a range (its KV API works, not only its HTTP listener). */
async function answers(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/v3/kv/range`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from('/').toString('base64') }),
      signal: AbortSignal.timeout(1_000),
    });
    await res.text();
    return res.ok;
  } catch {
    return false;
  }
}
