/**
 * The one-time-code rules on both state stores: in memory (one node) and in the shared Redis
 * (several nodes, each test run under its own key prefix). The same behaviour tests run on both;
 * then what only Redis has: two nodes on one prefix, the key layout, malformed stored values,
 * Redis going away, and the choice by configuration.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/util.ts';
import { loadConfig } from '../../src/config.ts';
import {
  createOneTimeCodes,
  MemoryOtpStore,
  OneTimeCodes,
  OTP_EVIDENCE,
  OtpStoreDataError,
  OtpStoreUnavailableError,
  RedisOtpStore,
  type OneTimeCodesOptions,
  type OtpState,
  type OtpStateStore,
} from '../../src/otp/index.ts';
import { ERROR_CODES } from '../../signaling/protocol.ts';
import { openTestEvidence, type TestEvidence } from '../helpers/evidence.ts';
import { RedisProcess, redisTestPort } from './store/redis-process.ts';
import { deletePrefix, SHARED_REDIS_URL, silentLog, testPrefix } from './store/redis-helpers.ts';

const SECRET = 'one-time-code-store-test-secret-0123456789';
/** A 6-digit code other than `code`. */
const other = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

const prefixes: string[] = [];
afterAll(async () => {
  for (const p of prefixes) await deletePrefix(p);
});

function newPrefix(): string {
  const p = testPrefix();
  prefixes.push(p);
  return p;
}

function openRedisStore(prefix: string): Promise<RedisOtpStore> {
  return RedisOtpStore.open({ url: SHARED_REDIS_URL, keyPrefix: prefix, log: silentLog });
}

type Kind = 'memory' | 'redis';
/** A store per "node": memory nodes share one Map (one process), Redis nodes share one prefix. */
interface Backend {
  node(): Promise<OtpStateStore>;
}
function backend(kind: Kind, now: () => number): Backend {
  if (kind === 'memory') {
    const shared = new MemoryOtpStore(now);
    return { node: async () => shared };
  }
  const prefix = newPrefix();
  return { node: () => openRedisStore(prefix) };
}

describe.each<Kind>(['memory', 'redis'])('one-time codes on the %s store', (kind) => {
  let evidence: TestEvidence;
  let clock: number;
  let stores: OtpStateStore[];
  let nodes: Backend;

  beforeEach(async () => {
    evidence = await openTestEvidence();
    clock = Date.UTC(2026, 10, 23, 9, 0, 0);
    stores = [];
    nodes = backend(kind, () => clock);
  });
  afterEach(async () => {
    for (const s of stores) await s.close?.();
    await evidence.close();
  });

  async function codes(opts: OneTimeCodesOptions = {}, from: Backend = nodes): Promise<OneTimeCodes> {
    const store = await from.node();
    stores.push(store);
    return new OneTimeCodes({ now: () => clock, secret: SECRET, store, ...opts }, evidence.sink, silentLog);
  }

  const results = (sessionId: string) =>
    evidence
      .entries(sessionId)
      .filter((e) => e.type === OTP_EVIDENCE.result)
      .map((e) => [e.payload.result, e.payload.attempts]);

  it('issues a code that verifies once; afterwards there is no code to try', async () => {
    const otp = await codes();
    const issued = await otp.issue('s-1', 't-alice');
    expect(await otp.status('s-1')).toEqual({ result: 'no_code', attempts: 0 });
    expect(await otp.verify('s-1', issued.code)).toEqual({ result: 'verified', attemptsLeft: 0, challengeId: issued.challengeId });
    expect(await otp.verify('s-1', issued.code)).toMatchObject({ result: 'no_code', attemptsLeft: 0 });
    expect(await otp.status('s-1')).toEqual({ result: 'verified', attempts: 1 });
    expect(results('s-1')).toEqual([['verified', 1]]);
    expect(await otp.verify('s-2', issued.code)).toEqual({ result: 'no_code', attemptsLeft: 0, challengeId: null });
  });

  it('counts wrong codes and locks at the fifth; the right code is refused after that', async () => {
    const otp = await codes();
    const { code } = await otp.issue('s-1', 't-alice');
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await otp.verify('s-1', other(code)));
    expect(answers.map((a) => [a.result, a.attemptsLeft])).toEqual([
      ['wrong', 4],
      ['wrong', 3],
      ['wrong', 2],
      ['wrong', 1],
      ['locked', 0],
    ]);
    expect(await otp.verify('s-1', code)).toMatchObject({ result: 'locked', attemptsLeft: 0 });
    expect(await otp.status('s-1')).toEqual({ result: 'locked', attempts: 5 });
    expect(results('s-1')).toEqual([
      ['wrong', 1],
      ['wrong', 2],
      ['wrong', 3],
      ['wrong', 4],
      ['locked', 5],
    ]);
  });

  it('expires after its lifetime (injected clock), recorded once', async () => {
    const otp = await codes({ ttlMs: 60_000 });
    const { code } = await otp.issue('s-1', 't-alice');
    clock += 59_999;
    expect(await otp.verify('s-1', other(code))).toMatchObject({ result: 'wrong', attemptsLeft: 4 });
    clock += 1;
    expect(await otp.status('s-1')).toEqual({ result: 'expired', attempts: 1 });
    expect(await otp.verify('s-1', code)).toMatchObject({ result: 'expired', attemptsLeft: 0 });
    expect(await otp.verify('s-1', code)).toMatchObject({ result: 'expired', attemptsLeft: 0 });
    expect(results('s-1')).toEqual([
      ['wrong', 1],
      ['expired', 1],
    ]);
  });

  it('keeps the rate limit across codes: a new code restarts the count, at most 3, 10 s apart', async () => {
    const otp = await codes();
    const first = await otp.issue('s-1', 't-alice');
    await expect(otp.issue('s-1', 't-alice')).rejects.toMatchObject({ code: 'issue_too_soon', retryAfterMs: 10_000 });
    expect(await otp.verify('s-1', other(first.code))).toMatchObject({ result: 'wrong', attemptsLeft: 4 });
    clock += 10_000;
    const second = await otp.issue('s-1', 't-alice');
    expect(second.challengeId).not.toBe(first.challengeId);
    expect(await otp.status('s-1')).toEqual({ result: 'no_code', attempts: 0 });
    clock += 10_000;
    await otp.issue('s-1', 't-alice');
    clock += 10_000;
    await expect(otp.issue('s-1', 't-alice')).rejects.toMatchObject({ code: 'too_many_codes' });
  });

  it('drops a session after its retention, and forgets one on request', async () => {
    // Retention on the wall clock here: Redis expires keys on its own clock, not the injected one.
    const real = backend(kind, Date.now);
    const otp = await codes({ now: Date.now, ttlMs: 1000, retentionMs: 1000 }, real);
    const { code } = await otp.issue('s-1', 't-alice');
    expect(await otp.status('s-1')).toEqual({ result: 'no_code', attempts: 0 });
    await expect.poll(() => otp.status('s-1'), { timeout: 10_000, interval: 100 }).toBeUndefined();
    expect(await otp.verify('s-1', code)).toEqual({ result: 'no_code', attemptsLeft: 0, challengeId: null });
    // Dropped with it: the rate limit's count, so the session could have a code again.
    expect((await otp.issue('s-1', 't-alice')).code).toMatch(/^\d{6}$/);

    const kept = await codes();
    const issued = await kept.issue('s-2', 't-alice');
    await kept.forget('s-2');
    expect(await kept.verify('s-2', issued.code)).toMatchObject({ result: 'no_code' });
    expect(await kept.status('s-2')).toBeUndefined();
    await kept.forget('s-never');
  });

  it('two nodes on one state: a code issued on one verifies on the other', async () => {
    const [a, b] = [await codes(), await codes()];
    const issued = await b.issue('s-1', 't-on-b');
    expect(await a.verify('s-1', other(issued.code))).toMatchObject({ result: 'wrong', attemptsLeft: 4 });
    expect(await b.status('s-1')).toEqual({ result: 'wrong', attempts: 1 });
    expect(await a.verify('s-1', issued.code)).toEqual({ result: 'verified', attemptsLeft: 0, challengeId: issued.challengeId });
    expect(await b.verify('s-1', issued.code)).toMatchObject({ result: 'no_code' });
  });

  it('two nodes, concurrent: wrong attempts from both never exceed the limit, and only one of two simultaneous issues wins', async () => {
    const [a, b] = [await codes(), await codes()];
    const issues = await Promise.allSettled([a.issue('s-1', 't-a'), b.issue('s-1', 't-b')]);
    expect(issues.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(issues.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).toMatchObject([{ code: 'issue_too_soon' }]);
    const { code } = (issues.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ code: string }>).value;

    const N = 24;
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => (i % 2 ? a : b).verify('s-1', other(code))));
    const counted = answers.filter((x) => x.result === 'wrong');
    // Every counted attempt saw its own count: 4, 3, 2, 1 once each, then exactly one lock.
    expect(counted.map((x) => x.attemptsLeft).sort()).toEqual([1, 2, 3, 4]);
    expect(answers.filter((x) => x.result === 'locked')).toHaveLength(N - 4);
    expect(answers.every((x) => x.result === 'wrong' || x.result === 'locked')).toBe(true);
    expect(await a.status('s-1')).toEqual({ result: 'locked', attempts: 5 });
    expect(
      results('s-1')
        .map(([, n]) => n)
        .sort(),
    ).toEqual([1, 2, 3, 4, 5]);
    expect(results('s-1').filter(([r]) => r === 'locked')).toEqual([['locked', 5]]);
    expect(await b.verify('s-1', code)).toMatchObject({ result: 'locked' });
  });
});

describe('the Redis one-time-code store', () => {
  let evidence: TestEvidence;
  const open: Array<{ close(): Promise<void> }> = [];
  const raw = new Redis(SHARED_REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });

  beforeEach(async () => {
    evidence = await openTestEvidence();
  });
  afterEach(async () => {
    for (const x of open.splice(0)) await x.close();
    await evidence.close();
  });
  afterAll(() => raw.disconnect());

  async function node(prefix: string, opts: OneTimeCodesOptions = {}): Promise<OneTimeCodes> {
    const otp = new OneTimeCodes({ secret: SECRET, store: await openRedisStore(prefix), ...opts }, evidence.sink, silentLog);
    open.push(otp);
    return otp;
  }

  it('keeps one JSON state per session under <prefix>otp:<sessionId>, with the retention as its expiry, never the code', async () => {
    const p = newPrefix();
    const otp = await node(p, { retentionMs: 3_600_000 });
    const { code, challengeId } = await otp.issue('s-1', 't-alice');
    expect(await raw.keys(`${p}*`)).toEqual([`${p}otp:s-1`]);
    const stored = JSON.parse((await raw.get(`${p}otp:s-1`))!) as OtpState;
    expect(stored).toMatchObject({ challengeId, status: 'open', attempts: 0, issued: 1 });
    expect(stored.codeHash).toMatch(/^[0-9a-f]{64}$/);
    // As a token of its own: the epoch-ms times in the state hold digit runs that may contain it by chance.
    expect(JSON.stringify(stored)).not.toMatch(new RegExp(`(?<![0-9])${code}(?![0-9])`));
    const ttl = await raw.pttl(`${p}otp:s-1`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    // A read that changes nothing does not write (nor extend the retention).
    await raw.pexpire(`${p}otp:s-1`, 1_000_000);
    await otp.status('s-1');
    expect(await raw.pttl(`${p}otp:s-1`)).toBeLessThanOrEqual(1_000_000);
    await otp.forget('s-1');
    expect(await raw.exists(`${p}otp:s-1`)).toBe(0);
  });

  it('answers a malformed stored value with OtpStoreDataError, for that session only, and writes nothing over it', async () => {
    const p = newPrefix();
    const otp = await node(p);
    const valid: OtpState = { challengeId: null, codeHash: null, status: 'open', expiresAt: 0, attempts: 0, issued: 1, lastIssuedAt: 0 };
    const planted: Array<[string, string]> = [
      ['not json', 'not JSON'],
      [JSON.stringify({ ...valid, attempts: -1 }), 'attempts'],
      [JSON.stringify({ ...valid, codeHash: 'zz' }), 'codeHash'],
      [JSON.stringify({ ...valid, code: '123456' }), 'code'],
      [JSON.stringify([valid]), '(root)'],
      ['', 'not JSON'],
    ];
    for (const [value, detail] of planted) {
      await raw.set(`${p}otp:s-bad`, value);
      for (const call of [() => otp.verify('s-bad', '123456'), () => otp.issue('s-bad', 't-alice'), () => otp.status('s-bad')]) {
        const err = await call().catch((e: unknown) => e);
        expect(err, value).toBeInstanceOf(OtpStoreDataError);
        expect((err as Error).message).toContain('s-bad');
        expect((err as Error).message).toContain(detail);
      }
      expect(await raw.get(`${p}otp:s-bad`)).toBe(value);
    }
    await raw.del(`${p}otp:s-bad`);
    await raw.hset(`${p}otp:s-bad`, 'a', '1');
    await expect(otp.verify('s-bad', '123456')).rejects.toBeInstanceOf(OtpStoreDataError);
    // Other sessions are unaffected, and the session can be cleared.
    const { code } = await otp.issue('s-good', 't-alice');
    expect(await otp.verify('s-good', code)).toMatchObject({ result: 'verified' });
    await otp.forget('s-bad');
    expect(await otp.status('s-bad')).toBeUndefined();
  });

  it('fails with a typed `unavailable` error when Redis is unreachable, at start and while running, and recovers when it is back', async () => {
    const port = await freePort();
    const refused = await RedisOtpStore.open({ url: `redis://:s3cret-pass@127.0.0.1:${port}`, keyPrefix: 'x:', log: silentLog }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OtpStoreUnavailableError);
    expect((refused as Error).message).toContain(`cannot connect to Redis at 127.0.0.1:${port}`);
    expect((refused as Error).message).not.toContain('s3cret');

    const server = new RedisProcess(redisTestPort());
    await server.start();
    try {
      const store = await RedisOtpStore.open({ url: server.url, keyPrefix: 'otp-down:', log: silentLog, opTimeoutMs: 500 });
      const otp = new OneTimeCodes({ secret: SECRET, store }, evidence.sink, silentLog);
      open.push(otp);
      const { code } = await otp.issue('s-1', 't-alice');
      await server.stop();
      const err = await otp.verify('s-1', code).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OtpStoreUnavailableError);
      // The code signaling/handlers.ts turns into a typed `unavailable` answer.
      expect((err as OtpStoreUnavailableError).code).toBe('unavailable');
      expect(ERROR_CODES).toContain('unavailable');
      await expect(otp.issue('s-2', 't-alice')).rejects.toMatchObject({ code: 'unavailable' });
      // Nothing was counted while Redis was away: the code still verifies once it is back (AOF kept it).
      await server.start();
      await expect.poll(() => otp.verify('s-1', code).then((o) => o.result, (e: Error) => e.name), { timeout: 10_000, interval: 100 }).toBe('verified');
      expect(evidence.entries('s-1').filter((e) => e.type === OTP_EVIDENCE.result).map((e) => e.payload.attempts)).toEqual([1]);
      await otp.close();
      await expect(otp.status('s-1')).rejects.toBeInstanceOf(OtpStoreUnavailableError);
    } finally {
      await server.dispose();
    }
  });

  it('is what createOneTimeCodes builds when REDIS_URL is set (memory otherwise): two nodes configured alike share codes', async () => {
    const p = newPrefix();
    const env = { REDIS_URL: SHARED_REDIS_URL, REDIS_KEY_PREFIX: p, OTP_SECRET: SECRET };
    const [a, b] = [await createOneTimeCodes(loadConfig(env), evidence.sink, silentLog), await createOneTimeCodes(loadConfig(env), evidence.sink, silentLog)];
    open.push(a, b);
    const { code } = await b.issue('s-1', 't-on-b');
    expect(await raw.exists(`${p}otp:s-1`)).toBe(1);
    expect(await a.verify('s-1', code)).toMatchObject({ result: 'verified' });

    const local = await createOneTimeCodes(loadConfig({ REDIS_KEY_PREFIX: p }), evidence.sink, silentLog);
    open.push(local);
    await local.issue('s-local', 't-alice');
    expect(await raw.exists(`${p}otp:s-local`)).toBe(0);

    await expect(createOneTimeCodes({ ...loadConfig(env), OTP_SECRET: undefined }, evidence.sink, silentLog)).rejects.toThrow(/OTP_SECRET is required with REDIS_URL/);
  });
});
