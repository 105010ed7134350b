#!/usr/bin/env -S node --max-semi-space-size=4 --no-allocation-site-pretenuring
// The flags above are core/node-flags.ts's NODE_FLAGS (why each: there). Processes started by
// other means (`node dist/src/cli/main.js …`, the lab, the benchmarks) pass them themselves.
import { readFileSync } from 'node:fs';
import { runCli } from './program.js';

// The package root's package.json: three levels up from dist/src/cli/main.js, and found by
// walking up when the build lives elsewhere (e.g. a private output folder).
function readPackage(): { version: string } {
  let dir = new URL('../../../', import.meta.url);
  for (let i = 0; i < 6; i++) {
    try {
      return JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { version: string };
    } catch {
      dir = new URL('../', dir);
    }
  }
  return { version: '0.0.0-unknown' };
}
const pkg = readPackage();

// A reader that goes away (`isthmus schema | head -1`) is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

// Started by `isthmus lab` (or another supervisor) with an IPC channel: when the parent goes away,
// even by kill -9, the channel closes and this process shuts down as on SIGTERM. No orphans.
if (process.env.ISTHMUS_EXIT_WITH_PARENT === '1' && process.channel) {
  process.channel.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}

process.exitCode = await runCli(process.argv.slice(2), {
  version: pkg.version,
  stdout: process.stdout,
  stderr: process.stderr,
});
