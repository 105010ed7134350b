import assert from 'node:assert/strict';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { IsthmusError } from '../../src/core/errors.js';
import {
  LAST_KNOWN_GOOD_FILE,
  lastKnownGoodFiles,
  loadLastKnownGood,
  saveLastKnownGood,
} from '../../src/dataplane/last-known-good.js';
import { region, service, yamlStream } from '../support/mesh-fixtures.js';
import { snapshotOf, TestLab } from '../support/proxy-harness.js';

const snapshot = (version: string) =>
  snapshotOf({
    version,
    policyRevision: 7,
    generatedAtMs: 1_700_000_000_000,
    resources: yamlStream(region('us-east'), service('catalog')),
    endpoints: [{ service: 'catalog', port: 8080, locality: 'us-east/us-east-a', address: '10.0.0.1' }],
  });

/** The error `fn` rejects with (fails the test when it resolves). */
async function rejection(fn: () => Promise<unknown>): Promise<IsthmusError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof IsthmusError, String(err));
    return err;
  }
  assert.fail('expected a rejection');
}

describe('last-known-good snapshot on disk', () => {
  const lab = new TestLab();
  after(() => lab.close());

  it('round-trips a snapshot through one enveloped file, creating a missing folder', async () => {
    const dir = path.join(await lab.dir(), 'not', 'yet');
    assert.equal(await loadLastKnownGood(dir), undefined, 'a missing folder is "none yet"');
    const file = await saveLastKnownGood(dir, snapshot('v1'), { savedAtMs: 1234 });
    assert.equal(file, path.join(dir, LAST_KNOWN_GOOD_FILE));
    const loaded = await loadLastKnownGood(dir);
    assert.deepEqual(loaded?.snapshot, snapshot('v1'));
    assert.equal(loaded?.file, file);
    assert.deepEqual(loaded?.skipped, []);
    const [envelope, payload, rest] = (await readFile(file, 'utf8')).split('\n');
    assert.equal(rest, '', 'two lines, the last one terminated');
    const e = JSON.parse(envelope ?? '') as Record<string, unknown>;
    assert.equal(e.format, 'isthmus.last-known-good');
    assert.equal(e.formatVersion, 1);
    assert.equal(e.snapshotVersion, 'v1');
    assert.equal(e.savedAtMs, 1234);
    assert.equal(e.payloadBytes, Buffer.byteLength(payload ?? ''));
    assert.match(String(e.payloadSha256), /^[0-9a-f]{64}$/);
    assert.deepEqual(await readdir(dir), [LAST_KNOWN_GOOD_FILE], 'no temp file is left behind');
  });

  it('keeps the previous good file as .prev and falls back to it when a byte flips', async () => {
    const dir = await lab.dir();
    await saveLastKnownGood(dir, snapshot('v1'));
    await saveLastKnownGood(dir, snapshot('v2'));
    const { current, previous } = lastKnownGoodFiles(dir);
    assert.equal((await loadLastKnownGood(dir))?.snapshot.version, 'v2');
    const bytes = await readFile(current);
    const at = bytes.indexOf('catalog', bytes.indexOf('\n'));
    bytes[at] = 'k'.charCodeAt(0); // same length, different content
    await writeFile(current, bytes);
    const loaded = await loadLastKnownGood(dir);
    assert.equal(loaded?.snapshot.version, 'v1');
    assert.equal(loaded?.file, previous);
    assert.equal(loaded?.skipped.length, 1);
    assert.equal(loaded?.skipped[0]?.file, current);
    assert.match(loaded?.skipped[0]?.problem ?? '', /checksum mismatch/);
  });

  it('names the file and says "truncated" for a cut-off file; with no .prev, it is an error', async () => {
    const dir = await lab.dir();
    const file = await saveLastKnownGood(dir, snapshot('v1'));
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, bytes.length - 40));
    const err = await rejection(() => loadLastKnownGood(dir));
    assert.equal(err.code, 'ISTHMUS_E_CORRUPT');
    assert.ok(err.message.includes(file), err.message);
    assert.match(err.message, /truncated: the payload has \d+ of its \d+ bytes/);
    // Cut inside the envelope line, and an empty file.
    await writeFile(file, bytes.subarray(0, 20));
    assert.match((await rejection(() => loadLastKnownGood(dir))).message, /truncated inside the envelope/);
    await writeFile(file, '');
    assert.match((await rejection(() => loadLastKnownGood(dir))).message, /empty/);
  });

  it('calls a garbage or foreign file what it is', async () => {
    const dir = await lab.dir();
    const { current } = lastKnownGoodFiles(dir);
    await writeFile(current, Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0a, 0x42]));
    const garbage = await rejection(() => loadLastKnownGood(dir));
    assert.equal(garbage.code, 'ISTHMUS_E_CORRUPT');
    assert.match(garbage.message, /not an Isthmus last-known-good file/);
    assert.ok(garbage.message.includes(current));
    await writeFile(current, '{"format":"someone-else","formatVersion":1}\n{}\n');
    assert.match(
      (await rejection(() => loadLastKnownGood(dir))).message,
      /format "someone-else", expected "isthmus.last-known-good"/,
    );
  });

  it('refuses an unknown format version with a clear error', async () => {
    const dir = await lab.dir();
    const file = await saveLastKnownGood(dir, snapshot('v1'));
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('"formatVersion":1', '"formatVersion":2'));
    const err = await rejection(() => loadLastKnownGood(dir));
    assert.match(err.message, /format version 2 is not one this release reads \(it reads 1\)/);
  });

  it('replaces a damaged current file through the atomic path without pushing a good .prev out', async () => {
    const dir = await lab.dir();
    await saveLastKnownGood(dir, snapshot('v1'));
    await saveLastKnownGood(dir, snapshot('v2'));
    const { current, previous } = lastKnownGoodFiles(dir);
    await writeFile(current, 'garbage\n');
    // A crash between write and rename leaves a temp file; the next save clears it.
    await writeFile(path.join(dir, `.${LAST_KNOWN_GOOD_FILE}.999-abc.tmp`), 'partial');
    await saveLastKnownGood(dir, snapshot('v3'));
    assert.equal((await loadLastKnownGood(dir))?.snapshot.version, 'v3');
    const prev = JSON.parse((await readFile(previous, 'utf8')).split('\n')[0] ?? '') as {
      snapshotVersion: string;
    };
    assert.equal(prev.snapshotVersion, 'v1', 'the good .prev stays; the damaged file is not rotated into it');
    assert.deepEqual((await readdir(dir)).sort(), [LAST_KNOWN_GOOD_FILE, `${LAST_KNOWN_GOOD_FILE}.prev`]);
  });

  it('uses .prev when the current file is missing (a crash between the two renames)', async () => {
    const dir = await lab.dir();
    await saveLastKnownGood(dir, snapshot('v1'));
    await saveLastKnownGood(dir, snapshot('v2'));
    const { current, previous } = lastKnownGoodFiles(dir);
    await rm(current);
    const loaded = await loadLastKnownGood(dir);
    assert.equal(loaded?.snapshot.version, 'v1');
    assert.equal(loaded?.file, previous);
  });
});
