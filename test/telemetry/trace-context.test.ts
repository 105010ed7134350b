import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { seededRandom, type Random } from '../../src/core/random.js';
import {
  formatOt,
  formatTraceparent,
  isValidSpanId,
  isValidTraceId,
  isValidTracestateKey,
  isValidTracestateValue,
  newSpanId,
  newTraceId,
  nextTraceparent,
  parseOt,
  parseTraceparent,
  parseTracestate,
  readOt,
  TRACE_FLAG_RANDOM,
  TRACE_FLAG_SAMPLED,
  TraceState,
} from '../../src/telemetry/trace-context.js';

const TRACE = '12345678901234567890123456789012';
const PARENT = '1234567890123456';
const VALID = `00-${TRACE}-${PARENT}-01`;

const hexString = (length: number) =>
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: length, maxLength: length });

describe('traceparent', () => {
  // Cases from the W3C spec and its test suite (test/test.py), in the suite's order.
  const cases: [name: string, value: string | string[] | undefined, valid: boolean][] = [
    ['spec example, sampled', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', true],
    ['spec example, not sampled', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', true],
    ['absent', undefined, false],
    ['empty', '', false],
    ['one field in an array', [VALID], true],
    ['duplicated header', [VALID, `00-${TRACE.slice(0, -1)}1-${PARENT}-01`], false],
    ['duplicated header joined by Node', `${VALID}, ${VALID}`, false],
    ['no fields', [], false],
    ['v00 with a trailing character', `${VALID}.`, false],
    ['v00 with extra fields', `${VALID}-what-the-future-will-be-like`, false],
    ['future version', `cc-${TRACE}-${PARENT}-01`, true],
    ['future version with extra fields', `cc-${TRACE}-${PARENT}-01-what-the-future-will-be-like`, true],
    [
      'future version, extra fields without a dash',
      `cc-${TRACE}-${PARENT}-01.what-the-future-will-be-like`,
      false,
    ],
    ['future version shorter than 55', `cc-${TRACE}-${PARENT}-1`, false],
    ['version ff', `ff-${TRACE}-${PARENT}-01`, false],
    ['version with illegal character (first)', `.0-${TRACE}-${PARENT}-01`, false],
    ['version with illegal character (second)', `0.-${TRACE}-${PARENT}-01`, false],
    ['version uppercase', `CC-${TRACE}-${PARENT}-01`, false],
    ['version too long (3)', `000-${TRACE}-${PARENT}-01`, false],
    ['version too long (4)', `0000-${TRACE}-${PARENT}-01`, false],
    ['version too short', `0-${TRACE}-${PARENT}-01`, false],
    ['trace-id all zero', `00-${'0'.repeat(32)}-${PARENT}-01`, false],
    ['trace-id illegal character (first)', `00-.${TRACE.slice(1)}-${PARENT}-01`, false],
    ['trace-id illegal character (last)', `00-${TRACE.slice(0, -1)}.-${PARENT}-01`, false],
    ['trace-id uppercase', `00-4BF92F3577B34DA6A3CE929D0E0E4736-${PARENT}-01`, false],
    ['trace-id too long', `00-${TRACE}3-${PARENT}-01`, false],
    ['trace-id too short', `00-${TRACE.slice(0, -1)}-${PARENT}-01`, false],
    ['parent-id all zero', `00-${TRACE}-${'0'.repeat(16)}-01`, false],
    ['parent-id illegal character (first)', `00-${TRACE}-.${PARENT.slice(1)}-01`, false],
    ['parent-id illegal character (last)', `00-${TRACE}-${PARENT.slice(0, -1)}.-01`, false],
    ['parent-id uppercase', `00-${TRACE}-00F067AA0BA902B7-01`, false],
    ['parent-id too long', `00-${TRACE}-${PARENT}7-01`, false],
    ['parent-id too short', `00-${TRACE}-${PARENT.slice(0, -1)}-01`, false],
    ['flags illegal character (first)', `00-${TRACE}-${PARENT}-.0`, false],
    ['flags illegal character (second)', `00-${TRACE}-${PARENT}-0.`, false],
    ['flags uppercase', `00-${TRACE}-${PARENT}-0A`, false],
    ['flags too long', `00-${TRACE}-${PARENT}-001`, false],
    ['flags too short', `00-${TRACE}-${PARENT}-1`, false],
    ['leading space', ` ${VALID}`, true],
    ['leading tab', `\t${VALID}`, true],
    ['trailing space', `${VALID} `, true],
    ['trailing tab', `${VALID}\t`, true],
    ['surrounding OWS', `\t ${VALID} \t`, true],
    ['inner space', `00- ${TRACE.slice(1)}-${PARENT}-01`, false],
    ['wrong delimiter', `00_${TRACE}-${PARENT}-01`, false],
    ['missing delimiter', `00-${TRACE}${PARENT}--01`, false],
    ['non-ASCII', `00-${TRACE.slice(0, -1)}é-${PARENT}-01`, false],
  ];
  for (const [name, value, valid] of cases) {
    it(`${valid ? 'accepts' : 'rejects'} ${name}`, () => {
      const tp = parseTraceparent(value);
      if (!valid) return assert.equal(tp, undefined);
      assert.ok(tp, 'expected a traceparent');
      assert.ok(isValidTraceId(tp.traceId) && isValidSpanId(tp.parentId));
    });
  }

  it('reads the fields, keeping only the sampled and random flags', () => {
    assert.deepEqual(parseTraceparent(VALID), { version: 0, traceId: TRACE, parentId: PARENT, flags: 1 });
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-03`)?.flags, TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM);
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-ff`)?.flags, 0x03);
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-04`)?.flags, 0);
    const future = parseTraceparent(`cc-${TRACE}-${PARENT}-07-more`);
    assert.deepEqual(future, { version: 0xcc, traceId: TRACE, parentId: PARENT, flags: 3 });
  });

  it('formats at version 00 with unknown flags cleared, and refuses invalid ids', () => {
    assert.equal(
      formatTraceparent({ traceId: TRACE, parentId: PARENT, flags: 0xff }),
      `00-${TRACE}-${PARENT}-03`,
    );
    const future = parseTraceparent(`cc-${TRACE}-${PARENT}-01-x`);
    assert.ok(future);
    assert.equal(formatTraceparent(future), VALID);
    assert.throws(
      () => formatTraceparent({ traceId: '0'.repeat(32), parentId: PARENT, flags: 0 }),
      RangeError,
    );
    assert.throws(
      () => formatTraceparent({ traceId: TRACE, parentId: 'ABCDEF0123456789', flags: 0 }),
      RangeError,
    );
  });

  it('parse(format(x)) = x for any valid fields', () => {
    fc.assert(
      fc.property(
        hexString(32),
        hexString(16),
        fc.integer({ min: 0, max: 3 }),
        (traceId, parentId, flags) => {
          fc.pre(isValidTraceId(traceId) && isValidSpanId(parentId));
          const tp = { version: 0, traceId, parentId, flags };
          assert.deepEqual(parseTraceparent(formatTraceparent(tp)), tp);
        },
      ),
    );
  });

  it('never throws and accepts only well-formed values', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        const tp = parseTraceparent(s);
        if (tp) assert.ok(s.trim().startsWith(`${s.trim().slice(0, 2)}-${tp.traceId}-${tp.parentId}-`));
      }),
    );
  });

  it('generates random, lowercase, non-zero ids that repeat for a seed', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const ids = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const traceId = newTraceId(a);
      assert.equal(traceId, newTraceId(b));
      assert.ok(isValidTraceId(traceId), traceId);
      const spanId = newSpanId(a);
      newSpanId(b);
      assert.ok(isValidSpanId(spanId), spanId);
      ids.add(traceId);
    }
    assert.equal(ids.size, 1000);
  });

  it('never generates an all-zero id, even from a degenerate source', () => {
    const zero: Random = { next: () => 0 };
    assert.ok(isValidTraceId(newTraceId(zero)));
    assert.ok(isValidSpanId(newSpanId(zero)));
  });

  it('spreads the randomness bits of trace ids evenly', () => {
    // The last 14 digits are what consistent sampling reads: each hex digit should be uniform.
    const random = seededRandom(1);
    const histogram = new Array<number>(16).fill(0);
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const id = newTraceId(random);
      histogram[parseInt(id[18] as string, 16)]!++;
    }
    for (const count of histogram)
      assert.ok(Math.abs(count - n / 16) < 5 * Math.sqrt(n / 16), histogram.join());
  });

  it('next traceparent keeps the random flag of the parent and sets it for a new trace', () => {
    const flags = (header: string) => parseTraceparent(header)?.flags;
    assert.equal(flags(nextTraceparent(TRACE, PARENT, true)), TRACE_FLAG_RANDOM | TRACE_FLAG_SAMPLED);
    assert.equal(flags(nextTraceparent(TRACE, PARENT, false, 0x01)), 0);
    assert.equal(flags(nextTraceparent(TRACE, PARENT, true, 0x02)), 0x03);
    assert.equal(flags(nextTraceparent(TRACE, PARENT, false, 0x03)), TRACE_FLAG_RANDOM);
  });

  it('formats the next traceparent as formatTraceparent would, with only the known flags', () => {
    const random = seededRandom(5);
    for (const parentFlags of [undefined, 0x00, 0x01, 0x02, 0x03, 0xff])
      for (const sampled of [true, false]) {
        const traceId = newTraceId(random);
        const spanId = newSpanId(random);
        const header = nextTraceparent(traceId, spanId, sampled, parentFlags);
        const tp = parseTraceparent(header);
        assert.ok(tp, header);
        assert.equal(header, formatTraceparent(tp));
        assert.deepEqual([tp.traceId, tp.parentId], [traceId, spanId]);
        assert.equal((tp.flags & TRACE_FLAG_SAMPLED) !== 0, sampled);
      }
    assert.equal(nextTraceparent(TRACE, PARENT, true), `00-${TRACE}-${PARENT}-03`);
  });
});

describe('tracestate parsing', () => {
  const entries = (v: string | string[] | undefined) => parseTracestate(v)?.entries();

  it('reads the spec examples and combines fields in order', () => {
    assert.deepEqual(entries('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'), [
      ['rojo', '00f067aa0ba902b7'],
      ['congo', 't61rcWkgMzE'],
    ]);
    assert.equal(
      parseTracestate(['foo=1,bar=2', 'rojo=1,congo=2', 'baz=3'])?.format(),
      'foo=1,bar=2,rojo=1,congo=2,baz=3',
    );
  });

  it('treats absent and empty headers as an empty list', () => {
    assert.equal(parseTracestate(undefined)?.size, 0);
    assert.equal(parseTracestate('')?.size, 0);
    assert.equal(parseTracestate(' \t ')?.size, 0);
    assert.deepEqual(entries(['foo=1', '']), [['foo', '1']]);
    assert.deepEqual(entries(['', 'foo=1']), [['foo', '1']]);
  });

  it('ignores empty and whitespace-only list-members', () => {
    assert.deepEqual(entries('a=1,,b=2'), [
      ['a', '1'],
      ['b', '2'],
    ]);
    assert.deepEqual(entries(',a=1, ,\t,b=2,'), [
      ['a', '1'],
      ['b', '2'],
    ]);
  });

  it('ignores OWS around members and keeps leading spaces of a value', () => {
    const expected = [
      ['foo', '1'],
      ['bar', '2'],
      ['baz', '3'],
    ];
    assert.deepEqual(entries('foo=1 \t , \t bar=2, \t baz=3'), expected);
    assert.deepEqual(entries('foo=1\t \t,\t \tbar=2,\t \tbaz=3'), expected);
    for (const v of [' foo=1', '\tfoo=1', 'foo=1 ', 'foo=1\t', '\t foo=1 \t'])
      assert.deepEqual(entries(v), [['foo', '1']]);
    assert.deepEqual(entries('foo=  a b'), [['foo', '  a b']]);
  });

  it('discards the whole header when a member is malformed', () => {
    for (const v of [
      'foo =1',
      'FOO=1',
      'foo.bar=1',
      '@foo=1,bar=2',
      'foo=bar=baz',
      'foo=,bar=3',
      'foo= ,bar=3',
      'foo',
      'foo,bar=1',
      '=1',
      'foo=1\tx',
      'foo=a\u00e9',
      'foo=a\nb',
      `foo=${'x'.repeat(257)}`,
    ]) {
      assert.equal(parseTracestate(v), undefined, JSON.stringify(v));
      assert.equal(parseTracestate(['ok=1', v]), undefined, JSON.stringify(v));
    }
  });

  it('keeps the left-most entry of a repeated key', () => {
    assert.deepEqual(entries('foo=1,foo=2'), [['foo', '1']]);
    assert.deepEqual(entries(['foo=1', 'bar=3', 'foo=2']), [
      ['foo', '1'],
      ['bar', '3'],
    ]);
  });

  it('accepts 32 members and discards 33', () => {
    const members = (n: number) => Array.from({ length: n }, (_, i) => `bar${i + 1}=${i + 1}`);
    assert.equal(parseTracestate(members(32).join(','))?.size, 32);
    assert.equal(parseTracestate([members(30).join(','), '', members(32).slice(30).join(',')])?.size, 32);
    assert.equal(parseTracestate(members(33).join(',')), undefined);
    // Repeated keys dropped as duplicates do not count.
    assert.equal(parseTracestate([...members(32), 'bar1=x'].join(','))?.size, 32);
  });

  it('accepts every allowed character', () => {
    const key = 'abcdefghijklmnopqrstuvwxyz0123456789_-*/';
    let value = '';
    for (let c = 0x20; c <= 0x7e; c++) if (c !== 0x2c && c !== 0x3d) value += String.fromCharCode(c);
    assert.deepEqual(entries(`${key}=${value}`), [[key, value]]);
    assert.deepEqual(entries(`${key}@a-z0-9_-*/=${value}`), [[`${key}@a-z0-9_-*/`, value]]);
    assert.equal(parseTracestate(`k=${'v'.repeat(256)}`)?.size, 1);
  });

  describe('key grammar', () => {
    const level1: [string, boolean][] = [
      ['a', true],
      ['z'.repeat(256), true],
      ['z'.repeat(257), false],
      ['1abc', false], // a simple key starts with a letter
      ['t'.repeat(241) + '@' + 'v'.repeat(14), true],
      ['t'.repeat(242) + '@v', false],
      ['t@' + 'v'.repeat(14), true],
      ['t@' + 'v'.repeat(15), false],
      ['1tenant@vendor', true], // a tenant-id may start with a digit
      ['tenant@1vendor', false], // a system-id may not
      ['foo@', false],
      ['@foo', false],
      ['foo@@bar', false],
      ['foo@bar@baz', false],
      ['Foo', false],
      ['foo.bar', false],
      ['', false],
    ];
    for (const [key, valid] of level1) {
      it(`Level 1 ${valid ? 'accepts' : 'rejects'} ${JSON.stringify(key.length > 20 ? `${key.slice(0, 8)}…(${key.length})` : key)}`, () =>
        assert.equal(isValidTracestateKey(key, 'level1'), valid));
    }

    it('Level 2 (the default) allows @ anywhere after the first character, up to 256 characters', () => {
      for (const key of [
        'foo@',
        'foo@@bar',
        'foo@bar@baz',
        '1abc',
        't'.repeat(242) + '@v',
        't@' + 'v'.repeat(15),
      ]) {
        assert.ok(isValidTracestateKey(key), key);
        assert.deepEqual(parseTracestate(`${key}=1,bar=2`)?.keys(), [key, 'bar']);
      }
      for (const key of ['@foo', 'z'.repeat(257), 'Foo', 'foo.bar', 'foo bar']) {
        assert.ok(!isValidTracestateKey(key), key);
      }
      assert.ok(isValidTracestateKey('z'.repeat(256)));
    });

    it('every Level 1 key is a Level 2 key', () => {
      for (const [key, valid] of level1) if (valid) assert.ok(isValidTracestateKey(key, 'level2'), key);
    });

    it('parses with the Level 1 grammar when asked', () => {
      assert.equal(parseTracestate('foo@=1,bar=2', 'level1'), undefined);
      assert.equal(parseTracestate(['foo=1', `${'t'.repeat(242)}@v=1`], 'level1'), undefined);
      assert.equal(parseTracestate(['foo=1', `${'t'.repeat(241)}@${'v'.repeat(14)}=1`], 'level1')?.size, 2);
    });
  });

  it('value grammar', () => {
    assert.ok(isValidTracestateValue(' leading'));
    assert.ok(isValidTracestateValue('in side'));
    assert.ok(!isValidTracestateValue('trailing '));
    assert.ok(!isValidTracestateValue(''));
    assert.ok(!isValidTracestateValue('a,b'));
    assert.ok(!isValidTracestateValue('a=b'));
    assert.ok(!isValidTracestateValue('a\tb'));
    assert.ok(!isValidTracestateValue('x'.repeat(257)));
  });

  it('parse(format(x)) = x for any valid list', () => {
    const key = fc
      .tuple(
        fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'),
        fc.string({ unit: fc.constantFrom(...'abz09_-*/@'), maxLength: 20 }),
      )
      .map(([first, rest]) => first + rest);
    const value = fc
      .string({
        unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
        minLength: 1,
        maxLength: 40,
      })
      .filter(isValidTracestateValue);
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(key, value), { maxLength: 32, selector: ([k]) => k }), (list) => {
        const state = new TraceState();
        for (const [k, v] of [...list].reverse()) state.set(k, v);
        const parsed = parseTracestate(state.format());
        assert.deepEqual(parsed?.entries(), list);
        assert.equal(parsed?.formattedLength, state.format().length);
      }),
    );
  });

  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        const state = parseTracestate(s);
        if (state) assert.equal(parseTracestate(state.format())?.format(), state.format());
      }),
    );
  });
});

describe('tracestate mutation', () => {
  it('set adds to the left and moves an updated key to the left', () => {
    const state = parseTracestate('congo=t61rcWkgMzE');
    assert.ok(state);
    state.set('rojo', '00f067aa0ba902b7');
    assert.equal(state.format(), 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
    state.set('congo', 'ucfJifl5GOE');
    assert.equal(state.format(), 'congo=ucfJifl5GOE,rojo=00f067aa0ba902b7');
    state.set('congo', 'again');
    assert.equal(state.format(), 'congo=again,rojo=00f067aa0ba902b7');
  });

  it('delete removes a key and keeps the order of the rest', () => {
    const state = parseTracestate('a=1,b=2,c=3');
    assert.ok(state);
    assert.equal(state.delete('b'), true);
    assert.equal(state.delete('b'), false);
    assert.equal(state.format(), 'a=1,c=3');
    assert.equal(state.get('c'), '3');
    assert.equal(state.has('b'), false);
  });

  it('set drops the right-most member beyond 32', () => {
    const state = parseTracestate(Array.from({ length: 32 }, (_, i) => `k${i}=${i}`).join(','));
    assert.ok(state);
    state.set('new', 'x');
    assert.equal(state.size, 32);
    assert.deepEqual(state.keys().slice(0, 2), ['new', 'k0']);
    assert.equal(state.has('k31'), false);
    // Updating an existing key at 32 members removes nothing else.
    state.set('k30', 'y');
    assert.equal(state.size, 32);
    assert.equal(state.has('k29'), true);
  });

  it('set refuses keys and values outside the grammar', () => {
    const state = new TraceState();
    assert.throws(() => state.set('Bad', '1'), RangeError);
    assert.throws(() => state.set('ok', 'a,b'), RangeError);
    assert.throws(() => state.set('ok', ''), RangeError);
    assert.throws(() => new TraceState('level1').set('foo@', '1'), RangeError);
    assert.equal(state.size, 0);
  });

  it('truncates entries over 128 characters first, then from the right, stopping when it fits', () => {
    const big = (k: string) => `${k}=${'x'.repeat(150 - k.length - 1)}`; // 150 characters
    const small = (k: string) => `${k}=${'y'.repeat(60 - k.length - 1)}`; // 60 characters
    const members = [
      small('a'),
      big('b1'),
      small('c'),
      big('b2'),
      small('d'),
      small('e'),
      big('b3'),
      small('f'),
    ];
    const state = parseTracestate(members.join(','));
    assert.ok(state);
    assert.equal(state.formattedLength, 3 * 150 + 5 * 60 + 7);
    // Over 512 by 245: removing b3 (151 with its comma) is not enough, removing b2 as well is.
    assert.equal(state.truncate(), 2);
    assert.deepEqual(state.keys(), ['a', 'b1', 'c', 'd', 'e', 'f']);
    assert.equal(state.formattedLength, 150 + 5 * 60 + 5);
    // The large b1 goes first even though it is not right-most; then f and e from the right.
    assert.equal(state.truncate(200), 3);
    assert.deepEqual(state.keys(), ['a', 'c', 'd']);
    assert.equal(state.formattedLength, 3 * 60 + 2);
    assert.equal(state.truncate(200), 0);
    assert.equal(state.truncate(10), 3);
    assert.equal(state.format(), '');
  });

  it('clone is independent', () => {
    const state = parseTracestate('a=1');
    assert.ok(state);
    const copy = state.clone();
    copy.set('b', '2');
    assert.equal(state.format(), 'a=1');
    assert.equal(copy.format(), 'b=2,a=1');
    assert.equal(copy.toString(), 'b=2,a=1');
  });
});

describe('OpenTelemetry ot entry', () => {
  it('reads th and rv and keeps other sub-keys in order', () => {
    assert.deepEqual(parseOt('th:fd70a4;rv:6e6d1a75832a2f;k1:13;foo:Bar.x-y_z'), {
      th: 'fd70a4',
      rv: '6e6d1a75832a2f',
      extra: ['k1:13', 'foo:Bar.x-y_z'],
    });
    assert.deepEqual(parseOt('p:8;r:62'), { th: undefined, rv: undefined, extra: ['p:8', 'r:62'] });
    assert.deepEqual(parseOt('th:0'), { th: '0', rv: undefined, extra: [] });
    assert.deepEqual(parseOt('k:'), { th: undefined, rv: undefined, extra: ['k:'] });
  });

  it('lowercases th and drops a malformed th or rv', () => {
    assert.equal(parseOt('th:FD70A4')?.th, 'fd70a4');
    for (const th of ['', 'g', '123456789012345', '-1']) {
      assert.deepEqual(parseOt(`th:${th};x:1`), { th: undefined, rv: undefined, extra: ['x:1'] }, th);
    }
    for (const rv of ['', '6e6d1a75832a2', '6e6d1a75832a2f0', '6E6D1A75832A2F']) {
      assert.equal(parseOt(`rv:${rv}`)?.rv, undefined, rv);
    }
  });

  it('rejects malformed syntax', () => {
    for (const v of [
      '',
      ';',
      'th:0;',
      ';th:0',
      'th',
      'th=0',
      'Th:0',
      '1x:0',
      'a:b c',
      'a:b,c',
      'th:0;th:8',
      'rv:6e6d1a75832a2f;rv:6e6d1a75832a2f',
      'k:1;k:2',
      `k:${'v'.repeat(255)}`,
    ]) {
      assert.equal(parseOt(v), undefined, v);
    }
  });

  it('format(parse(x)) = x for canonical order, and round trips', () => {
    const v = 'th:c;rv:0123456789abcd;z9:A.b';
    const ot = parseOt(v);
    assert.ok(ot);
    assert.equal(formatOt(ot), v);
    assert.equal(formatOt({ th: undefined, rv: undefined, extra: [] }), '');
    assert.equal(formatOt({ th: undefined, rv: '0123456789abcd', extra: ['a:1'] }), 'rv:0123456789abcd;a:1');
    fc.assert(
      fc.property(
        fc.option(
          fc.integer({ min: 1, max: 14 }).chain((n) => hexString(n)),
          { nil: undefined },
        ),
        fc.option(hexString(14), { nil: undefined }),
        fc.uniqueArray(
          fc.tuple(
            fc.constantFrom('a', 'k1', 'zz'),
            fc.string({ unit: fc.constantFrom(...'aZ0._-'), maxLength: 8 }),
          ),
          { selector: ([k]) => k, maxLength: 3 },
        ),
        (th, rv, pairs) => {
          const ot = { th, rv, extra: pairs.map(([k, x]) => `${k}:${x}`) };
          const text = formatOt(ot);
          fc.pre(text !== '');
          assert.deepEqual(parseOt(text), ot);
        },
      ),
    );
  });

  it('is found in a tracestate', () => {
    const state = parseTracestate('congo=1,ot=th:8;rv:00000000000001');
    assert.ok(state);
    assert.deepEqual(readOt(state), { th: '8', rv: '00000000000001', extra: [] });
    assert.equal(readOt(new TraceState()), undefined);
  });
});
