import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { continuityView, newSourceState, recordLoss } from '../../src/telemetry/continuity.js';

const none = { full: 0, corrupt: 0, torn: 0, rejected: 0 };

describe('signals a source says it lost', () => {
  it('keeps the highest count per process and sums the processes', () => {
    const s = newSourceState('proxy/a@eu-west');
    assert.deepEqual(continuityView(s, 0, 1000).lostAtSource, { ...none, total: 0 });
    recordLoss(s, 'p1', { ...none, full: 10 });
    recordLoss(s, 'p1', { ...none, full: 7, rejected: 3 });
    recordLoss(s, undefined, { ...none, corrupt: 1 });
    recordLoss(s, 'p2', { ...none, full: 5 });
    assert.deepEqual(continuityView(s, 0, 1000).lostAtSource, {
      full: 15,
      corrupt: 1,
      torn: 0,
      rejected: 3,
      total: 19,
    });
  });

  it('keeps 32 processes apart and sums older ones into one entry, losing no count', () => {
    const s = newSourceState('proxy/a@eu-west');
    for (let i = 1; i <= 40; i++) recordLoss(s, `p${i}`, { ...none, full: i, torn: 1 });
    assert.equal(s.lost?.length, 32);
    assert.equal(s.lost?.[0]?.instance, '(earlier)');
    // The newest processes are still apart: a later heartbeat of one of them raises its count only.
    recordLoss(s, 'p40', { ...none, full: 41, torn: 1 });
    const total = (40 * 41) / 2 + 1;
    assert.deepEqual(continuityView(s, 0, 1000).lostAtSource, {
      full: total,
      corrupt: 0,
      torn: 40,
      rejected: 0,
      total: total + 40,
    });
  });
});
