#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { runCli } from './program.js';

// dist/src/cli/main.js → the package root's package.json.
const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

// A reader that goes away (`isthmus schema | head -1`) is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

process.exitCode = await runCli(process.argv.slice(2), {
  version: pkg.version,
  stdout: process.stdout,
  stderr: process.stderr,
});
