#!/usr/bin/env -S node --max-semi-space-size=4
// The flag above caps V8's young generation at 4 MB per semi-space (Node's default grows it to
// 16 MB): a proxy's short-lived request garbage is collected sooner, for ~15 MB less peak memory
// under load and no measurable throughput cost (docs/performance.md). Processes started by other
// means (`node dist/src/cli/main.js …`, the lab, the benchmark) pass it themselves.
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
