import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Absolute paths of the programs the benchmark runs. */
export interface Tools {
  nginx: string;
  haproxy: string;
  wrk: string;
  taskset: string;
}

/** One missing prerequisite and exactly how to get it. */
export interface Missing {
  what: string;
  fix: string;
}

// nginx and haproxy live in sbin, which is not on every user's PATH.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

function resolvable(specifier: string): boolean {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

/** CPUs this process may run on, from /proc/self/status (`0-1`, `0,2-3`). */
export function allowedCpus(): Set<number> {
  const line = /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  const out = new Set<number>();
  for (const part of line.split(',')) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || !Number.isInteger(a)) continue;
    for (let c = a; c <= (b ?? a); c++) out.add(c);
  }
  return out;
}

/**
 * Checks, without installing anything, what the benchmark needs. Returns the tools, or every
 * missing piece with the command that provides it.
 */
export function checkPrerequisites(isthmusMain: string): { tools?: Tools; missing: Missing[] } {
  const missing: Missing[] = [];
  const debian = (pkg: string, bin: string) => {
    const found = which(bin);
    if (!found)
      missing.push({
        what: `${bin} (Debian package ${pkg})`,
        fix: `sudo apt-get update && sudo apt-get install -y ${pkg}`,
      });
    return found;
  };
  const nginx = debian('nginx', 'nginx');
  const haproxy = debian('haproxy', 'haproxy');
  const wrk = debian('wrk', 'wrk');
  const taskset = debian('util-linux', 'taskset');
  for (const pkg of ['fastify', '@fastify/http-proxy', 'undici'])
    if (!resolvable(pkg))
      missing.push({
        what: `the npm package ${pkg} (a dependency of this repository)`,
        fix: 'npm install   (in the repository root; it installs the devDependencies)',
      });
  if (!existsSync(isthmusMain))
    missing.push({ what: `the built Isthmus CLI (${isthmusMain})`, fix: 'npm run build' });
  if (process.platform !== 'linux')
    missing.push({ what: 'Linux (/proc and taskset)', fix: 'run the benchmark on a Linux machine' });
  else {
    const cpus = allowedCpus();
    if (!cpus.has(0) || !cpus.has(1))
      missing.push({
        what: `cores 0 and 1 (this process may use: ${[...cpus].join(',') || 'none'})`,
        fix: 'run on a machine (or container cpuset) with at least 2 cores, including 0 and 1',
      });
  }
  if (missing.length > 0 || !nginx || !haproxy || !wrk || !taskset) return { missing };
  return { tools: { nginx, haproxy, wrk, taskset }, missing };
}

/**
 * {@link checkPrerequisites} for a benchmark that loads only Isthmus (the telemetry benchmark):
 * nginx as the upstream, wrk, taskset, the built CLI and cores 0 and 1; no HAProxy, no fastify.
 */
export function checkLoadPrerequisites(isthmusMain: string): {
  tools?: Omit<Tools, 'haproxy'>;
  missing: Missing[];
} {
  const missing: Missing[] = [];
  const debian = (pkg: string, bin: string) => {
    const found = which(bin);
    if (!found)
      missing.push({
        what: `${bin} (Debian package ${pkg})`,
        fix: `sudo apt-get update && sudo apt-get install -y ${pkg}`,
      });
    return found;
  };
  const nginx = debian('nginx', 'nginx');
  const wrk = debian('wrk', 'wrk');
  const taskset = debian('util-linux', 'taskset');
  if (!resolvable('undici'))
    missing.push({
      what: 'the npm package undici (a dependency of this repository)',
      fix: 'npm install   (in the repository root)',
    });
  if (!existsSync(isthmusMain))
    missing.push({ what: `the built Isthmus CLI (${isthmusMain})`, fix: 'npm run build' });
  if (process.platform !== 'linux')
    missing.push({ what: 'Linux (/proc and taskset)', fix: 'run the benchmark on a Linux machine' });
  else {
    const cpus = allowedCpus();
    if (!cpus.has(0) || !cpus.has(1))
      missing.push({
        what: `cores 0 and 1 (this process may use: ${[...cpus].join(',') || 'none'})`,
        fix: 'run on a machine (or container cpuset) with at least 2 cores, including 0 and 1',
      });
  }
  if (missing.length > 0 || !nginx || !wrk || !taskset) return { missing };
  return { tools: { nginx, wrk, taskset }, missing };
}
