import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { IsthmusError } from '../core/errors.js';
import { decodeServerMessage, type Snapshot } from '../protocol/messages.js';

/**
 * The last snapshot a proxy applied, on disk, so that a restart during a control-plane outage
 * starts from it instead of from nothing.
 *
 * One file, `last-known-good.jsonl`, of two lines: a JSON envelope (format id, format version,
 * snapshot version, save time, byte length and SHA-256 of the payload), then the payload (the
 * snapshot as JSON, exactly `payloadBytes` bytes). It is only ever replaced whole: written to a
 * temporary file in the same folder, fsynced, renamed over the old one, and the folder fsynced.
 * The file it replaces is kept as `last-known-good.jsonl.prev` (when it was itself good), and
 * loading falls back to it when the current one is damaged.
 */

export const LAST_KNOWN_GOOD_FILE = 'last-known-good.jsonl';
export const LAST_KNOWN_GOOD_FORMAT = 'isthmus.last-known-good';
export const LAST_KNOWN_GOOD_FORMAT_VERSION = 1;
/** An envelope line is a few hundred bytes; a longer "first line" means this is not our file. */
const MAX_ENVELOPE_BYTES = 4096;
const TEMP_PREFIX = `.${LAST_KNOWN_GOOD_FILE}.`;
const TEMP_SUFFIX = '.tmp';

export interface LastKnownGoodEnvelope {
  format: string;
  formatVersion: number;
  snapshotVersion: string;
  /** When it was saved, wall-clock epoch ms. */
  savedAtMs: number;
  payloadBytes: number;
  /** Lower-case hex SHA-256 of the payload bytes. */
  payloadSha256: string;
}

export interface LastKnownGood {
  snapshot: Snapshot;
  /** The file it was read from (the `.prev` one after a fallback). */
  file: string;
  envelope: LastKnownGoodEnvelope;
  /** Files that exist but could not be used, and why (a damaged current file before `.prev`). */
  skipped: { file: string; problem: string }[];
}

/** The current file and the previous good one in `dir`. */
export function lastKnownGoodFiles(dir: string): { current: string; previous: string } {
  const current = path.join(dir, LAST_KNOWN_GOOD_FILE);
  return { current, previous: `${current}.prev` };
}

const corrupt = (file: string, problem: string) =>
  new IsthmusError('ISTHMUS_E_CORRUPT', `${file}: ${problem}`);

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** The bytes of a last-known-good file holding `snapshot`. */
export function encodeLastKnownGood(snapshot: Snapshot, savedAtMs: number): Buffer {
  const payload = Buffer.from(JSON.stringify(snapshot), 'utf8');
  const envelope: LastKnownGoodEnvelope = {
    format: LAST_KNOWN_GOOD_FORMAT,
    formatVersion: LAST_KNOWN_GOOD_FORMAT_VERSION,
    snapshotVersion: snapshot.version,
    savedAtMs,
    payloadBytes: payload.length,
    payloadSha256: sha256(payload),
  };
  return Buffer.concat([Buffer.from(`${JSON.stringify(envelope)}\n`, 'utf8'), payload, Buffer.from('\n')]);
}

/**
 * Reads a last-known-good file's bytes; throws an `ISTHMUS_E_CORRUPT` error naming `file` and
 * what is wrong (truncated, checksum, foreign, unknown format version).
 */
export function decodeLastKnownGood(
  bytes: Buffer,
  file: string,
): { snapshot: Snapshot; envelope: LastKnownGoodEnvelope } {
  if (bytes.length === 0) throw corrupt(file, 'the file is empty (truncated before anything was written)');
  const newline = bytes.indexOf(10);
  if (newline < 0 || newline > MAX_ENVELOPE_BYTES) {
    throw corrupt(
      file,
      newline < 0 && bytes.length <= MAX_ENVELOPE_BYTES && bytes[0] === 0x7b
        ? 'truncated inside the envelope line'
        : 'not an Isthmus last-known-good file: it does not start with an envelope line',
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(bytes.subarray(0, newline).toString('utf8'));
  } catch {
    throw corrupt(file, 'not an Isthmus last-known-good file: its first line is not a JSON envelope');
  }
  const h = (typeof header === 'object' && header !== null ? header : {}) as Partial<
    Record<keyof LastKnownGoodEnvelope, unknown>
  >;
  if (h.format !== LAST_KNOWN_GOOD_FORMAT)
    throw corrupt(
      file,
      `not an Isthmus last-known-good file: format ${JSON.stringify(h.format) ?? 'missing'}, expected "${LAST_KNOWN_GOOD_FORMAT}"`,
    );
  if (h.formatVersion !== LAST_KNOWN_GOOD_FORMAT_VERSION)
    throw corrupt(
      file,
      `format version ${JSON.stringify(h.formatVersion) ?? 'missing'} is not one this release reads (it reads ${LAST_KNOWN_GOOD_FORMAT_VERSION}); was it written by a newer Isthmus?`,
    );
  const { snapshotVersion, savedAtMs, payloadBytes, payloadSha256 } = h;
  if (
    typeof snapshotVersion !== 'string' ||
    typeof savedAtMs !== 'number' ||
    !Number.isSafeInteger(payloadBytes) ||
    (payloadBytes as number) < 0 ||
    typeof payloadSha256 !== 'string' ||
    !/^[0-9a-f]{64}$/.test(payloadSha256)
  )
    throw corrupt(file, 'the envelope lacks snapshotVersion, savedAtMs, payloadBytes or payloadSha256');
  const envelope: LastKnownGoodEnvelope = {
    format: LAST_KNOWN_GOOD_FORMAT,
    formatVersion: LAST_KNOWN_GOOD_FORMAT_VERSION,
    snapshotVersion,
    savedAtMs,
    payloadBytes: payloadBytes as number,
    payloadSha256,
  };
  let payload = bytes.subarray(newline + 1);
  if (payload.length === envelope.payloadBytes + 1 && payload[payload.length - 1] === 10)
    payload = payload.subarray(0, envelope.payloadBytes);
  if (payload.length < envelope.payloadBytes)
    throw corrupt(
      file,
      `truncated: the payload has ${payload.length} of its ${envelope.payloadBytes} bytes (an interrupted write or a full disk?)`,
    );
  if (payload.length > envelope.payloadBytes)
    throw corrupt(
      file,
      `${payload.length - envelope.payloadBytes} unexpected bytes after the ${envelope.payloadBytes}-byte payload`,
    );
  const actual = sha256(payload);
  if (actual !== envelope.payloadSha256)
    throw corrupt(
      file,
      `checksum mismatch: the payload's SHA-256 is ${actual}, the envelope says ${envelope.payloadSha256} (the file is damaged)`,
    );
  const decoded = decodeServerMessage(payload.toString('utf8'));
  if (!decoded.ok) throw corrupt(file, `the payload is not a valid snapshot: ${decoded.error}`);
  if (decoded.message.type !== 'snapshot')
    throw corrupt(file, `the payload is a "${decoded.message.type}" message, not a snapshot`);
  if (decoded.message.version !== envelope.snapshotVersion)
    throw corrupt(
      file,
      `the payload is snapshot ${JSON.stringify(decoded.message.version)}, the envelope says ${JSON.stringify(envelope.snapshotVersion)}`,
    );
  return { snapshot: decoded.message, envelope };
}

/** Reads one file: undefined when it does not exist; throws when it is unusable. */
async function readOne(
  file: string,
): Promise<{ snapshot: Snapshot; envelope: LastKnownGoodEnvelope } | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new IsthmusError('ISTHMUS_E_IO', `${file}: cannot read: ${(err as Error).message}`);
  }
  return decodeLastKnownGood(bytes, file);
}

/**
 * The last-known-good snapshot in `dir`: the current file, or `.prev` when the current one is
 * missing or damaged (`skipped` says why). Undefined when there is none yet (no file, or no
 * folder). Throws, naming each file and its problem, when files exist but none is usable.
 */
export async function loadLastKnownGood(dir: string): Promise<LastKnownGood | undefined> {
  const { current, previous } = lastKnownGoodFiles(dir);
  const skipped: LastKnownGood['skipped'] = [];
  let ioOnly = true;
  for (const file of [current, previous]) {
    try {
      const found = await readOne(file);
      if (found) return { ...found, file, skipped };
    } catch (err) {
      if (!(err instanceof IsthmusError)) throw err;
      if (err.code !== 'ISTHMUS_E_IO') ioOnly = false;
      skipped.push({
        file,
        problem: err.message.startsWith(`${file}: `) ? err.message.slice(file.length + 2) : err.message,
      });
    }
  }
  if (skipped.length === 0) return undefined;
  throw new IsthmusError(
    ioOnly ? 'ISTHMUS_E_IO' : 'ISTHMUS_E_CORRUPT',
    `no usable last-known-good snapshot in ${dir}: ${skipped.map((s) => `${s.file}: ${s.problem}`).join('; ')}`,
  );
}

/** Makes a rename or a file creation in `dir` durable (a no-op where folders cannot be opened). */
async function syncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
  } catch {
    return;
  }
  try {
    await handle.sync();
  } catch (err) {
    // Some platforms and file systems refuse fsync on a folder; the rename itself is still atomic.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw err;
  } finally {
    await handle.close();
  }
}

/**
 * Saves `snapshot` as the last-known-good one in `dir` (created when missing), atomically: temp
 * file in `dir`, write, fsync, rename, fsync `dir`. The replaced file becomes `.prev` when it
 * was good; a damaged one is replaced without pushing a good `.prev` out. Returns the file.
 */
export async function saveLastKnownGood(
  dir: string,
  snapshot: Snapshot,
  options: {
    /** Save time written in the envelope, wall-clock epoch ms (default now). */
    savedAtMs?: number;
  } = {},
): Promise<string> {
  const { current, previous } = lastKnownGoodFiles(dir);
  const data = encodeLastKnownGood(snapshot, options.savedAtMs ?? Date.now());
  const temp = path.join(dir, `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
  const fail = (err: unknown) =>
    new IsthmusError(
      'ISTHMUS_E_IO',
      `cannot save the last-known-good snapshot in ${dir}: ${(err as Error).message}`,
      { cause: err },
    );
  try {
    await mkdir(dir, { recursive: true });
    await removeStaleTemps(dir);
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw fail(err);
  }
  try {
    if (await isGood(current)) await rename(current, previous);
    await rename(temp, current);
    await syncDir(dir);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw fail(err);
  }
  return current;
}

async function isGood(file: string): Promise<boolean> {
  try {
    return (await readOne(file)) !== undefined;
  } catch {
    return false;
  }
}

/** Temp files left by a crash between write and rename: never valid, so removed. */
async function removeStaleTemps(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (name.startsWith(TEMP_PREFIX) && name.endsWith(TEMP_SUFFIX))
      await rm(path.join(dir, name), { force: true }).catch(() => undefined);
  }
}
