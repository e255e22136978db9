import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/logger.ts';
import {
  MemoryOtpStore,
  OneTimeCodes,
  OTP_EVIDENCE,
  OtpError,
  otpInputSchema,
  otpIssuedEvidence,
  otpResultEvidence,
  type OneTimeCodesOptions,
  type OtpState,
  type OtpStateStore,
} from '../../../src/otp/index.ts';
import { openTestEvidence, type TestEvidence } from '../../helpers/evidence.ts';

/** A real store that also keeps every state written to it, to check what is held. */
class RecordingStore implements OtpStateStore {
  readonly written: OtpState[] = [];
  private readonly inner: MemoryOtpStore;
  constructor(now: () => number) {
    this.inner = new MemoryOtpStore(now);
  }
  update<T>(sessionId: string, retentionMs: number, fn: (c: OtpState | undefined) => { next?: OtpState; result: T }): Promise<T> {
    return this.inner.update(sessionId, retentionMs, (cur) => {
      const out = fn(cur);
      if (out.next) this.written.push(out.next);
      return out;
    });
  }
  delete(sessionId: string): Promise<void> {
    return this.inner.delete(sessionId);
  }
}

let evidence: TestEvidence;
let clock: number;
let logLines: string[];
let store: RecordingStore;

beforeEach(async () => {
  evidence = await openTestEvidence();
  clock = Date.UTC(2026, 10, 23, 9, 0, 0);
  logLines = [];
  store = new RecordingStore(() => clock);
});
afterEach(async () => {
  await evidence.close();
});

function codes(opts: OneTimeCodesOptions = {}): OneTimeCodes {
  const dest = new Writable({
    write(chunk, _e, cb) {
      logLines.push(String(chunk));
      cb();
    },
  });
  return new OneTimeCodes({ now: () => clock, store, ...opts }, evidence.sink, createLogger('debug', dest));
}

/** A 6-digit code other than `code`. */
const other = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

describe('one-time codes', () => {
  it('issues 6 digits with a challenge id and expiry; the right code verifies once, then it is used up', async () => {
    const otp = codes();
    const issued = await otp.issue('s-1', 't-alice');
    expect(issued.code).toMatch(/^[0-9]{6}$/);
    expect(issued.challengeId).toMatch(/^[0-9a-f-]{36}$/);
    expect(issued.expiresAt).toBe(clock + 5 * 60_000);
    expect(await otp.verify('s-1', issued.code)).toEqual({ result: 'verified', attemptsLeft: 0, challengeId: issued.challengeId });
    expect(await otp.verify('s-1', issued.code)).toMatchObject({ result: 'no_code', attemptsLeft: 0 });
    expect(evidence.entries('s-1').map((e) => [e.type, e.actor, e.payload.result ?? null])).toEqual([
      ['otp.issued', 't-alice', null],
      ['otp.result', 'customer', 'verified'],
    ]);
    expect(evidence.entries('s-1')[0]!.payload).toEqual({ challengeId: issued.challengeId, expiresAt: new Date(issued.expiresAt).toISOString(), channel: 'bank_webhook', issuedCount: 1 });
    expect(evidence.entries('s-1')[1]!.payload).toEqual({ challengeId: issued.challengeId, result: 'verified', attempts: 1 });
  });

  it('counts wrong codes down and locks at the fifth; the right code is refused after that', async () => {
    const otp = codes();
    const { code } = await otp.issue('s-1', 't-alice');
    const wrong = other(code);
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await otp.verify('s-1', wrong));
    expect(answers.map((a) => [a.result, a.attemptsLeft])).toEqual([
      ['wrong', 4],
      ['wrong', 3],
      ['wrong', 2],
      ['wrong', 1],
      ['locked', 0],
    ]);
    expect(await otp.verify('s-1', code)).toMatchObject({ result: 'locked', attemptsLeft: 0 });
    const results = evidence.entries('s-1').filter((e) => e.type === OTP_EVIDENCE.result);
    // Every counted attempt, the locking one included; tries at a locked code change nothing and are not recorded.
    expect(results.map((e) => [e.payload.result, e.payload.attempts])).toEqual([
      ['wrong', 1],
      ['wrong', 2],
      ['wrong', 3],
      ['wrong', 4],
      ['locked', 5],
    ]);
  });

  it('a wrong try then the right code still verifies, with the attempts counted', async () => {
    const otp = codes();
    const { code } = await otp.issue('s-1', 't-alice');
    expect(await otp.verify('s-1', other(code))).toMatchObject({ result: 'wrong', attemptsLeft: 4 });
    expect(await otp.verify('s-1', code)).toMatchObject({ result: 'verified' });
    expect(evidence.entries('s-1').at(-1)!.payload).toMatchObject({ result: 'verified', attempts: 2 });
  });

  it('expires after its lifetime (injected clock), recorded once', async () => {
    const otp = codes({ ttlMs: 60_000 });
    const { code } = await otp.issue('s-1', 't-alice');
    clock += 59_999;
    expect(await otp.verify('s-1', other(code))).toMatchObject({ result: 'wrong' });
    clock += 1;
    expect(await otp.verify('s-1', code)).toEqual(expect.objectContaining({ result: 'expired', attemptsLeft: 0 }));
    expect(await otp.verify('s-1', code)).toMatchObject({ result: 'expired' });
    expect(evidence.entries('s-1').filter((e) => e.type === OTP_EVIDENCE.result).map((e) => [e.payload.result, e.payload.attempts])).toEqual([
      ['wrong', 1],
      ['expired', 1],
    ]);
  });

  it('a new code replaces the previous one and restarts the count; at most 3 codes, 10 s apart', async () => {
    const otp = codes();
    const first = await otp.issue('s-1', 't-alice');
    await expect(otp.issue('s-1', 't-alice')).rejects.toMatchObject({ code: 'issue_too_soon', retryAfterMs: 10_000 });
    clock += 4000;
    await expect(otp.issue('s-1', 't-alice')).rejects.toMatchObject({ code: 'issue_too_soon', retryAfterMs: 6000 });
    expect(await otp.verify('s-1', other(first.code))).toMatchObject({ result: 'wrong', attemptsLeft: 4 });
    clock += 6000;
    const second = await otp.issue('s-1', 't-alice');
    expect(second.challengeId).not.toBe(first.challengeId);
    // The old code is just another number now (unless the new one happens to be the same).
    const old = await otp.verify('s-1', first.code);
    expect(old).toMatchObject(first.code === second.code ? { result: 'verified' } : { result: 'wrong', attemptsLeft: 4, challengeId: second.challengeId });
    if (first.code !== second.code) expect(await otp.verify('s-1', second.code)).toMatchObject({ result: 'verified', challengeId: second.challengeId });
    clock += 10_000;
    const third = await otp.issue('s-1', 't-alice');
    clock += 10_000;
    const err = await otp.issue('s-1', 't-alice').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OtpError);
    expect(err).toMatchObject({ code: 'too_many_codes' });
    expect(await otp.verify('s-1', third.code)).toMatchObject({ result: 'verified' });
    expect(evidence.entries('s-1').filter((e) => e.type === OTP_EVIDENCE.issued).map((e) => e.payload.issuedCount)).toEqual([1, 2, 3]);
    // Sessions are independent.
    expect((await otp.issue('s-2', 't-alice')).code).toMatch(/^\d{6}$/);
  });

  it('takes 6 ASCII digits with spaces removed; anything else is invalid_input, not an attempt and not evidence', async () => {
    const otp = codes();
    const { code } = await otp.issue('s-1', 't-alice');
    const wrong = other(code);
    const bad: unknown[] = ['12345', '1234567', 'abcdef', '12 34 5', '١٢٣٤٥٦', '１２３４５６', '12345a', '', 123456, null, undefined, { code }, [code], '1'.repeat(10_000), `${code}\u0000`];
    for (const input of bad) {
      expect(await otp.verify('s-1', input), JSON.stringify(input)?.slice(0, 40)).toMatchObject({ result: 'invalid_input', attemptsLeft: 5 });
    }
    expect(evidence.entries('s-1').filter((e) => e.type === OTP_EVIDENCE.result)).toEqual([]);
    expect(await otp.verify('s-1', ` ${wrong.slice(0, 3)} ${wrong.slice(3)}\t`)).toMatchObject({ result: 'wrong', attemptsLeft: 4 });
    expect(await otp.verify('s-1', ` ${code.slice(0, 3)} ${code.slice(3)} `)).toMatchObject({ result: 'verified' });
    expect(otpInputSchema.safeParse(' 123 456 ')).toEqual({ success: true, data: '123456' });
    // Without a code there is nothing to try.
    expect(await otp.verify('s-9', '123456')).toEqual({ result: 'no_code', attemptsLeft: 0, challengeId: null });
    await expect(otp.issue('bad id', 't-alice')).rejects.toMatchObject({ code: 'invalid_session' });
    await expect(otp.verify('', code)).rejects.toMatchObject({ code: 'invalid_session' });
  });

  it('never keeps, logs or records the code: only an HMAC of it, keyed by the server secret', async () => {
    const otp = codes({ secret: 'x'.repeat(40) });
    const issuedCodes: string[] = [];
    for (const s of ['s-1', 's-2', 's-3']) {
      const { code } = await otp.issue(s, 't-alice');
      issuedCodes.push(code);
      await otp.verify(s, other(code));
      await otp.verify(s, code);
    }
    clock += 20_000;
    const { code: expiring } = await otp.issue('s-1', 't-alice');
    issuedCodes.push(expiring);
    clock += 10 * 60_000;
    await otp.verify('s-1', expiring);

    const serializedEvidence = JSON.stringify(['s-1', 's-2', 's-3'].flatMap((s) => evidence.entries(s)));
    expect(serializedEvidence).toContain(OTP_EVIDENCE.result);
    const stored = JSON.stringify(store.written);
    expect(store.written.length).toBeGreaterThan(0);
    expect(stored).toMatch(/"codeHash":"[0-9a-f]{64}"/);
    const logs = logLines.join('');
    expect(logs).toContain('one-time code checked');
    for (const code of issuedCodes) {
      // As a token of its own: epoch-ms timestamps in logs and states hold digit runs that may contain it by chance.
      const token = new RegExp(`(?<![0-9])${code}(?![0-9])`);
      expect(serializedEvidence).not.toMatch(token);
      expect(stored).not.toMatch(token);
      expect(logs).not.toMatch(token);
    }
    expect(() => codes({ secret: 'short' })).toThrow(/at least 32/);
  });

  it('hashes are keyed: a node with another secret on the same state cannot verify the code', async () => {
    const a = codes({ secret: 'a'.repeat(40) });
    const b = codes({ secret: 'b'.repeat(40) });
    const { code } = await a.issue('s-1', 't-alice');
    expect(await b.verify('s-1', code)).toMatchObject({ result: 'wrong', attemptsLeft: 4 });
    expect(await a.verify('s-1', code)).toMatchObject({ result: 'verified' });
  });

  it('builds evidence entries from ids, times, results and counts only', () => {
    const issued = otpIssuedEvidence('s-1', 't-bob', { challengeId: 'c-1', expiresAt: Date.UTC(2026, 0, 1), issuedCount: 2 });
    expect(issued).toEqual({ sessionId: 's-1', type: 'otp.issued', actor: 't-bob', payload: { challengeId: 'c-1', expiresAt: '2026-01-01T00:00:00.000Z', channel: 'bank_webhook', issuedCount: 2 } });
    expect(otpResultEvidence('s-1', 'customer', { challengeId: 'c-1', result: 'locked', attempts: 5 })).toEqual({
      sessionId: 's-1',
      type: 'otp.result',
      actor: 'customer',
      payload: { challengeId: 'c-1', result: 'locked', attempts: 5 },
    });
  });

  it('forgets a session on request, and the memory store drops states past their retention', async () => {
    const otp = codes({ retentionMs: 3_600_000 });
    const { code } = await otp.issue('s-1', 't-alice');
    await otp.forget('s-1');
    expect(await otp.verify('s-1', code)).toMatchObject({ result: 'no_code' });
    const mem = new MemoryOtpStore(() => clock);
    const state: OtpState = { challengeId: null, codeHash: null, status: 'open', expiresAt: 0, attempts: 0, issued: 1, lastIssuedAt: clock };
    await mem.update('a', 1000, () => ({ next: state, result: null }));
    expect(await mem.update('a', 1000, (cur) => ({ result: cur?.issued }))).toBe(1);
    clock += 1000;
    expect(await mem.update('a', 1000, (cur) => ({ result: cur }))).toBeUndefined();
    clock += 60_000;
    await mem.update('b', 1000, () => ({ result: null }));
    expect(mem.size).toBe(0);
  });
});
