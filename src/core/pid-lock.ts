import { readFileSync, realpathSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { IsthmusError } from './errors.js';

/** Folders this process has open, by real path (a pid file cannot tell two opens in one process apart). */
const heldHere = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What a lock file said about an owner that did not release it. */
export interface AbandonedLock {
  /** Its pid, if the file could be read. */
  pid: number | undefined;
  /** When it took the lock, epoch ms, if the file said. */
  startedAtMs: number | undefined;
}

/**
 * Takes a folder for this process (a telemetry log, a lab): the lock is the file `lockFile` in
 * it, holding the owner's pid; a lock whose pid is gone (the owner was killed) is taken over, and
 * `onTakeOver` hears what the file said of that owner. `what` names the folder's use in errors.
 * Returns the function that releases it.
 */
export function acquirePidLock(
  dir: string,
  lockFile: string,
  what: string,
  onTakeOver?: (abandoned: AbandonedLock) => void,
): () => void {
  const real = realpathSync(dir);
  const file = path.join(dir, lockFile);
  if (heldHere.has(real))
    throw new IsthmusError('ISTHMUS_E_IO', `${dir}: this ${what} is already open in this process`);
  const mine = `${JSON.stringify({ pid: process.pid, startedAtMs: Date.now() })}\n`;
  try {
    writeFileSync(file, mine, { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new IsthmusError('ISTHMUS_E_IO', `${file}: cannot create the lock file: ${String(err)}`, {
        cause: err,
      });
    let pid: unknown;
    let startedAtMs: unknown;
    try {
      ({ pid, startedAtMs } = JSON.parse(readFileSync(file, 'utf8')) as {
        pid?: unknown;
        startedAtMs?: unknown;
      });
    } catch {
      pid = undefined;
    }
    // Our own pid in the file means a previous incarnation with the same pid (a container's pid 1).
    if (typeof pid === 'number' && Number.isSafeInteger(pid) && pid !== process.pid && alive(pid))
      throw new IsthmusError(
        'ISTHMUS_E_IO',
        `${dir}: this ${what} is in use by process ${pid} (${lockFile}); one process per folder`,
      );
    writeFileSync(file, mine);
    onTakeOver?.({
      pid: typeof pid === 'number' && Number.isSafeInteger(pid) ? pid : undefined,
      startedAtMs: typeof startedAtMs === 'number' && Number.isFinite(startedAtMs) ? startedAtMs : undefined,
    });
  }
  heldHere.add(real);
  return () => {
    heldHere.delete(real);
    try {
      if (readFileSync(file, 'utf8') === mine) unlinkSync(file);
    } catch {
      // Already gone: nothing to release.
    }
  };
}
