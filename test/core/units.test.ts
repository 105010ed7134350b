import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDurationMs, formatSizeBytes, parseDurationMs, parseSizeBytes } from '../../src/core/units.js';

describe('durations', () => {
  for (const [text, ms] of [
    ['250ms', 250],
    ['5s', 5000],
    ['1m30s', 90_000],
    ['2h', 7_200_000],
    ['1.5s', 1500],
    ['0s', 0],
  ] as const) {
    it(`parses ${text}`, () => assert.equal(parseDurationMs(text), ms));
  }
  for (const text of ['5', '5 s', 's', '', '-1s', '1d', '5S', '1.s']) {
    it(`rejects ${JSON.stringify(text)}`, () =>
      assert.throws(() => parseDurationMs(text), { code: 'ISTHMUS_E_INVALID_VALUE' }));
  }
  it('formats the shortest exact form', () => {
    assert.equal(formatDurationMs(90_000), '1m30s');
    assert.equal(formatDurationMs(250), '250ms');
    assert.equal(formatDurationMs(0), '0s');
    assert.equal(formatDurationMs(3_600_001), '1h1ms');
  });
});

describe('sizes', () => {
  it('parses binary and decimal units', () => {
    assert.equal(parseSizeBytes('64MiB'), 64 * 1024 * 1024);
    assert.equal(parseSizeBytes('10MB'), 10_000_000);
    assert.equal(parseSizeBytes('512B'), 512);
  });
  it('rejects sizes without a unit or with a wrong-case unit', () => {
    for (const text of ['64', '64mib', '64 MiB', 'MiB']) {
      assert.throws(() => parseSizeBytes(text), { code: 'ISTHMUS_E_INVALID_VALUE' }, text);
    }
  });
  it('formats with the largest exact binary unit', () => {
    assert.equal(formatSizeBytes(64 * 1024 * 1024), '64MiB');
    assert.equal(formatSizeBytes(1000), '1000B');
  });
});
