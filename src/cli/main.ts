#!/usr/bin/env node
import { createRequire } from 'node:module';
import { runCli } from './program.js';

const require = createRequire(import.meta.url);
const { version } = require('../../../package.json') as { version: string };

process.exitCode = await runCli(process.argv.slice(2), {
  version,
  stdout: process.stdout,
  stderr: process.stderr,
});
