import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest folder above this (compiled) file holding package.json. */
export const repoRoot: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('package.json not found above the test files');
    dir = parent;
  }
  return dir;
})();

export function fromRoot(...parts: string[]): string {
  return path.join(repoRoot, ...parts);
}

/**
 * The folder holding the compiled tree this file belongs to: `dist` for `npm test`, or whatever
 * `--outDir` a build used, so tests run the bin of the same build as themselves.
 */
export const buildRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
