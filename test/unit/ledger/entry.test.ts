import canonicalize from 'canonicalize';
import { describe, expect, it } from 'vitest';
import { fromUtf8, utf8 } from '../../../src/ledger/bytes.ts';
import { canonicalJson, decodeEntry, encodeEntry, encodePrepared, EntryFormatError, prepareEntry } from '../../../src/ledger/entry.ts';

const time = new Date('2026-05-04T03:02:01.123Z');

/** A deterministic pseudo-random JSON value generator (xorshift). */
function generator(seed: number) {
  let x = seed;
  const next = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 2 ** 32);
  const strings = ['', 'a', 'é', '\u20ac', '😀', '"quote"', 'back\\slash', '\u0000\u001f', '\u2028', 'tab\t', 'ü\u0301', '\ud7ff', '\ue000'];
  const numbers = [0, -0, 1, -1, 0.1, 1e21, 1e-7, 123456789012345680000, 5e-324, 2 ** 53 - 1, -1.5, 1 / 3];
  const value = (depth: number): unknown => {
    const r = next();
    if (depth > 3 || r < 0.3) return [null, true, false][Math.floor(next() * 3)];
    if (r < 0.5) return numbers[Math.floor(next() * numbers.length)];
    if (r < 0.7) return strings[Math.floor(next() * strings.length)]! + strings[Math.floor(next() * strings.length)]!;
    if (r < 0.85) return Array.from({ length: Math.floor(next() * 4) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: Math.floor(next() * 4) }, () => [strings[Math.floor(next() * strings.length)]! + String(Math.floor(next() * 100)), value(depth + 1)]));
  };
  return value;
}

describe('entry encoding', () => {
  it('assembles exactly the RFC 8785 form of the entry, for many random payloads', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const payload = { v: generator(seed)(0), k: seed } as Record<string, unknown>;
      const input = { sessionId: `s-${seed}-é`, type: 'test.event', actor: 'teller "7"', payload };
      const bytes = encodePrepared(prepareEntry(input, time), seed * 1000);
      const expected = canonicalize({ index: seed * 1000, time: time.toISOString(), ...input });
      expect(fromUtf8(bytes), `seed ${seed}`).toBe(expected);
      const decoded = decodeEntry(bytes);
      expect(decoded.index).toBe(seed * 1000);
      expect(canonicalize(decoded)).toBe(expected);
    }
  });

  it('the fast canonical serializer agrees with the canonicalize package on parsed JSON', () => {
    for (let seed = 1; seed <= 1000; seed++) {
      const value = JSON.parse(JSON.stringify({ v: generator(seed * 7)(0) }));
      expect(canonicalJson(value), `seed ${seed}`).toBe(canonicalize(value));
    }
    expect(() => canonicalJson(JSON.parse('"\\ud800"'))).toThrow('lone surrogate');
  });

  it('encodes complete entries the same way', () => {
    const e = { index: 3, time: time.toISOString(), sessionId: 's', type: 'x.y', actor: 'system', payload: { b: 1, a: [2] } };
    expect(fromUtf8(encodeEntry(e))).toBe('{"actor":"system","index":3,"payload":{"a":[2],"b":1},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"x.y"}');
  });

  it.each([
    ['not JSON', '{"actor":'],
    ['not canonical (spaces)', '{"actor": "system","index":0,"payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
    ['not canonical (order)', '{"index":0,"actor":"system","payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
    ['a duplicated member', '{"actor":"system","actor":"x","index":0,"payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
    ['an extra field', '{"actor":"system","extra":1,"index":0,"payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
    ['a negative index', '{"actor":"system","index":-1,"payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
    ['a fractional index', '{"actor":"system","index":1.5,"payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
    ['a bad time', '{"actor":"system","index":0,"payload":{},"sessionId":"s","time":"yesterday","type":"t"}'],
    ['a bad type', '{"actor":"system","index":0,"payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"T T"}'],
    ['a payload that is not an object', '{"actor":"system","index":0,"payload":[],"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
    ['an escaped form where JCS writes the character', '{"actor":"\\u0073ystem","index":0,"payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
    ['a number JCS writes otherwise', '{"actor":"system","index":0,"payload":{"n":1.0},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}'],
  ])('refuses stored bytes with %s', (_what, text) => {
    expect(() => decodeEntry(utf8(text))).toThrow(EntryFormatError);
  });

  it('refuses invalid UTF-8', () => {
    const bytes = utf8('{"actor":"system","index":0,"payload":{},"sessionId":"s","time":"2026-05-04T03:02:01.123Z","type":"t"}');
    bytes[11] = 0xff;
    expect(() => decodeEntry(bytes)).toThrow('UTF-8');
  });

  it('refuses lone surrogates, which have no UTF-8 form', () => {
    expect(() => prepareEntry({ sessionId: 's', type: 't', actor: 'a\ud800', payload: {} }, time)).toThrow('lone surrogate');
    expect(() => prepareEntry({ sessionId: 's', type: 't', actor: 'a', payload: { x: '\udc00' } }, time)).toThrow();
  });
});
