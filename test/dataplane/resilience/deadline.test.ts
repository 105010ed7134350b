import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import {
  DEADLINE_HEADER,
  Deadline,
  MAX_DEADLINE_MS,
  parseDeadlineHeader,
} from '../../../src/dataplane/resilience/deadline.js';

describe('isthmus-deadline-ms header', () => {
  it('is named as the settings document it', () => assert.equal(DEADLINE_HEADER, 'isthmus-deadline-ms'));

  for (const [value, ms] of [
    ['850', 850],
    [' 850 ', 850],
    ['0', 0],
    ['007', 7],
    [String(MAX_DEADLINE_MS), 3_600_000],
    [['1200'], 1200],
  ] as const) {
    it(`parses ${JSON.stringify(value)}`, () => assert.equal(parseDeadlineHeader(value), ms));
  }

  it('is absent when the header is', () => assert.equal(parseDeadlineHeader(undefined), undefined));

  for (const value of [
    '',
    ' ',
    '-1',
    '+5',
    '1.5',
    '1e3',
    '0x10',
    'abc',
    '850ms',
    'Infinity',
    '٣',
    '3600001',
    '99999999999999999999999',
    '100, 200',
    ['100', '200'],
    [],
  ]) {
    it(`rejects ${JSON.stringify(value)}`, () =>
      assert.throws(() => parseDeadlineHeader(value), {
        code: 'ISTHMUS_E_BAD_HEADER',
        message: /isthmus-deadline-ms/,
      }));
  }
});

describe('Deadline', () => {
  it('counts down on the clock', () => {
    const clock = new ManualClock();
    const d = new Deadline(clock, 1000);
    assert.equal(d.remainingMs(), 1000);
    clock.advance(300);
    assert.equal(d.remainingMs(), 700);
    assert.equal(d.headerValue(), '700');
    assert.equal(d.expired(), false);
    assert.equal(d.canFit(700), true);
    assert.equal(d.canFit(701), false);
    clock.advance(700);
    assert.deepEqual([d.remainingMs(), d.expired(), d.canFit(0), d.headerValue()], [0, true, false, '0']);
    clock.advance(500);
    assert.equal(d.remainingMs(), 0, 'never negative');
  });

  it('gives an attempt min(perTry, remaining)', () => {
    const clock = new ManualClock();
    const d = new Deadline(clock, 1000);
    clock.advance(400);
    assert.equal(d.child(250).remainingMs(), 250);
    assert.equal(d.child(5000).remainingMs(), 600);
    const attempt = d.child(250);
    clock.advance(250);
    assert.deepEqual([attempt.expired(), d.remainingMs()], [true, 350]);
  });

  it('rounds the header value down, so the next hop is never promised more', () => {
    const clock = new ManualClock();
    const d = new Deadline(clock, 100);
    clock.advance(0.4);
    assert.equal(d.headerValue(), '99');
    assert.equal(parseDeadlineHeader(d.headerValue()), 99);
  });

  it('starts from the local overall timeout, shortened by a propagated budget', () => {
    const clock = new ManualClock();
    assert.equal(Deadline.start(clock, 10_000).remainingMs(), 10_000);
    assert.equal(Deadline.start(clock, 10_000, 850).remainingMs(), 850);
    assert.equal(Deadline.start(clock, 500, 850).remainingMs(), 500);
    assert.equal(Deadline.start(clock, 500, 0).expired(), true);
  });

  it('treats a negative budget as expired and refuses NaN', () => {
    const clock = new ManualClock();
    assert.equal(new Deadline(clock, -5).expired(), true);
    assert.throws(() => new Deadline(clock, Number.NaN), RangeError);
  });
});
