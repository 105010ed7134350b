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

/** The Debian package that provides each program. */
const DEBIAN_PACKAGE: Record<keyof Tools, string> = {
  nginx: 'nginx',
  haproxy: 'haproxy',
  wrk: 'wrk',
  taskset: 'util-linux',
};

/** npm packages that are devDependencies of this repository: `npm install` must not omit them. */
const DEV_PACKAGES: ReadonlySet<string> = new Set(['fastify', '@fastify/http-proxy']);

/** What a benchmark runs (found on PATH or in sbin) and imports, besides the built CLI. */
export interface Needs<T extends keyof Tools> {
  tools: readonly T[];
  packages: readonly string[];
}

/** What the proxy benchmark needs: every proxy it compares and the packages of its Node.js peers. */
export const PROXY_NEEDS: Needs<keyof Tools> = {
  tools: ['nginx', 'haproxy', 'wrk', 'taskset'],
  packages: ['fastify', '@fastify/http-proxy', 'undici'],
};

/** What a benchmark that loads only Isthmus needs (the telemetry benchmark): no HAProxy, no fastify. */
export const LOAD_NEEDS: Needs<'nginx' | 'wrk' | 'taskset'> = {
  tools: ['nginx', 'wrk', 'taskset'],
  packages: ['undici'],
};

/**
 * Checks, without installing anything, what a benchmark needs: `needs`, the built CLI and cores 0
 * and 1. Returns the tools, or every missing piece with the command that provides it.
 */
export function checkPrerequisites<T extends keyof Tools>(
  isthmusMain: string,
  needs: Needs<T>,
): { tools?: Pick<Tools, T>; missing: Missing[] } {
  const missing: Missing[] = [];
  const tools: Partial<Pick<Tools, T>> = {};
  for (const bin of needs.tools) {
    const pkg = DEBIAN_PACKAGE[bin];
    const found = which(bin);
    if (found) tools[bin] = found;
    else
      missing.push({
        what: `${bin} (Debian package ${pkg})`,
        fix: `sudo apt-get update && sudo apt-get install -y ${pkg}`,
      });
  }
  const npmFix = needs.packages.some((pkg) => DEV_PACKAGES.has(pkg))
    ? 'npm install   (in the repository root; it installs the devDependencies)'
    : 'npm install   (in the repository root)';
  for (const pkg of needs.packages)
    if (!resolvable(pkg))
      missing.push({ what: `the npm package ${pkg} (a dependency of this repository)`, fix: npmFix });
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
  if (missing.length > 0) return { missing };
  return { tools: tools as Pick<Tools, T>, missing };
}
