#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { runCli } from './program.js';

// dist/src/cli/main.js → the package root's package.json.
const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

process.exitCode = await runCli(process.argv.slice(2), {
  version: pkg.version,
  stdout: process.stdout,
  stderr: process.stderr,
});
