/**
 * The customer's post-call rating (issue 6): once per session, only after an answered call ended,
 * written to the ledger as `customer.rating` and kept on the session, where the supervisor board
 * averages it per teller.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { boardSnapshotSchema, type BoardSnapshot } from '../../signaling/protocol.ts';
import { callInProgress } from '../helpers/call.ts';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { next, outcome, request, SocketClients, type Client } from '../helpers/socket.ts';
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from './store/redis-helpers.ts';

let server: TestServer;
const clients = new SocketClients(() => server.url);
const CONSULTATION = { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-0001' };
/** Only bob speaks French among the demo tellers: his calls never go to alice. */
const FRENCH_CONSULTATION = { ...CONSULTATION, language: 'fr' };

/** Ratings are kept in the shared store: the one-node store and Redis (several nodes) alike. */
const STORES: Array<[string, () => Record<string, string>]> = [
  ['memory', () => ({})],
  ['redis', () => ({ REDIS_URL: SHARED_REDIS_URL, REDIS_KEY_PREFIX: redisPrefix })],
];
const redisPrefix = testPrefix();
afterEach(() => clients.closeAll());
afterAll(async () => {
  await deletePrefix(redisPrefix);
});

/** A call that was answered and that the customer hung up: the customer page is still connected. */
async function endedCall(teller: [string, string] = ['alice', 'alice-demo-pass'], session = CONSULTATION) {
  const call = await callInProgress(clients, server, { username: teller[0], password: teller[1] }, session);
  const ended = next(call.customer, 'call:ended');
  expect(await request(call.customer, 'call:hangup', {})).toEqual({ ok: true, data: { state: 'ended' } });
  await ended;
  // The teller leaves the floor so that later calls go where the test sends them.
  expect(await request(call.teller, 'teller:availability', { status: 'away' })).toMatchObject({ ok: true });
  return call;
}

async function ratingsOf(sessionId: string) {
  return (await server.app.ledger.entriesOf(sessionId)).filter((e) => e.type === 'customer.rating');
}

async function boardOnConnect(): Promise<BoardSnapshot> {
  const supervisor: Client = clients.open('/supervisor', await loginStaff(server.url, 'sam', 'sam-demo-pass'));
  const first = next(supervisor, 'board:update');
  expect(await outcome(supervisor)).toEqual({ connected: true });
  return boardSnapshotSchema.parse(await first);
}

describe.each(STORES)('post-call rating (%s store)', (name, env) => {
  beforeAll(async () => {
    server = await startTestServer(env());
    expect(server.app.store.kind).toBe(name);
  });
  afterAll(async () => {
    clients.closeAll();
    await server?.close();
  });

  it('is refused while the call is on, and when the customer never had a call', async () => {
    const { customer, sessionId } = await callInProgress(clients, server, undefined, CONSULTATION);
    expect(await request(customer, 'rating:submit', { score: 5 })).toMatchObject({ ok: false, error: { code: 'invalid_state' } });

    // A customer who left the queue before anyone answered has no call to rate (and is refused
    // typed, not ignored), even though the session is over.
    const waiting = await createSession(server, { ...CONSULTATION, businessType: 'wealth_product', language: 'fr' });
    const queued = clients.open('/customer', waiting.customerToken);
    expect(await outcome(queued)).toEqual({ connected: true });
    expect(await request(queued, 'queue:join', { consent: true })).toMatchObject({ ok: true });
    expect(await request(queued, 'rating:submit', { score: 3 })).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect(await request(queued, 'queue:leave', {})).toEqual({ ok: true, data: { state: 'abandoned' } });
    expect(await request(queued, 'rating:submit', { score: 3 })).toMatchObject({ ok: false, error: { code: 'invalid_state' } });

    expect(await ratingsOf(sessionId)).toEqual([]);
    expect(await ratingsOf(waiting.sessionId)).toEqual([]);
    expect((await server.app.store.getSession(sessionId))!.rating).toBeUndefined();
    expect(await request(customer, 'call:hangup', {})).toMatchObject({ ok: true });
  });

  it('refuses malformed ratings as bad_request and writes nothing', async () => {
    const { customer, teller, sessionId } = await endedCall();
    const before = server.app.ledger.ledger.size;
    const bad: unknown[] = [
      { score: 0 },
      { score: 6 },
      { score: 2.5 },
      { score: '5' },
      { score: null },
      {},
      { comment: 'no score' },
      { score: 4, comment: 'x'.repeat(1001) },
      { score: 4, comment: 42 },
      { score: 4, extra: true },
      { score: 4, sessionId },
      'five',
    ];
    for (const payload of bad) {
      expect(await request(customer, 'rating:submit', payload), JSON.stringify(payload)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    }
    // Staff cannot rate on the customer's behalf: the message does not exist on their namespace.
    expect(await request(teller, 'rating:submit', { score: 5 })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(server.app.ledger.ledger.size).toBe(before);
    expect(await ratingsOf(sessionId)).toEqual([]);
    expect((await server.app.store.getSession(sessionId))!.rating).toBeUndefined();

    // The session can still be rated after all that.
    expect(await request(customer, 'rating:submit', { score: 1 })).toMatchObject({ ok: true, data: { sessionId, score: 1 } });
  });

  it('records a rating once: a ledger entry, the session, and the teller\'s satisfaction on the board', async () => {
    const boardBefore = await boardOnConnect();
    const aliceBefore = boardBefore.tellers.find((t) => t.tellerId === 't-alice')!.satisfaction;

    const { customer, sessionId } = await endedCall();
    const comment = 'Quick and friendly, thank you.';
    const rated = await request<{ sessionId: string; score: number; ledgerIndex: number }>(customer, 'rating:submit', {
      score: 4,
      comment: `  ${comment}\n`,
    });
    expect(rated).toMatchObject({ ok: true, data: { sessionId, score: 4 } });
    if (!rated.ok) return;

    const [entry, ...more] = await ratingsOf(sessionId);
    expect(more).toEqual([]);
    expect(entry).toMatchObject({ type: 'customer.rating', actor: 'customer', payload: { score: 4, comment, tellerId: 't-alice' } });
    expect((await server.app.store.getSession(sessionId))!.rating).toMatchObject({ score: 4, comment, entryIndex: rated.data.ledgerIndex });

    // Once only.
    const size = server.app.ledger.ledger.size;
    expect(await request(customer, 'rating:submit', { score: 5 })).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect(server.app.ledger.ledger.size).toBe(size);

    const board = await boardOnConnect();
    const alice = board.tellers.find((t) => t.tellerId === 't-alice')!.satisfaction;
    const sum = (aliceBefore.average ?? 0) * aliceBefore.count + 4;
    expect(alice.count).toBe(aliceBefore.count + 1);
    expect(alice.average).toBeCloseTo(sum / alice.count, 2);
    expect(board.satisfaction.count).toBe(boardBefore.satisfaction.count + 1);
  });

  it('averages per teller and overall; an empty comment is no comment', async () => {
    const before = await boardOnConnect();
    const sat = (b: BoardSnapshot, id: string) => b.tellers.find((t) => t.tellerId === id)?.satisfaction ?? { count: 0, average: null };

    const a = await endedCall(['alice', 'alice-demo-pass']);
    expect(await request(a.customer, 'rating:submit', { score: 2, comment: '   ' })).toMatchObject({ ok: true });
    expect((await ratingsOf(a.sessionId))[0]!.payload).toEqual({ score: 2, tellerId: 't-alice' });
    const b = await endedCall(['bob', 'bob-demo-pass'], FRENCH_CONSULTATION);
    expect(await request(b.customer, 'rating:submit', { score: 5 })).toMatchObject({ ok: true });

    const after = await boardOnConnect();
    const expectAverage = (id: string, added: number[]) => {
      const old = sat(before, id);
      const count = old.count + added.length;
      expect(sat(after, id).count).toBe(count);
      expect(sat(after, id).average).toBeCloseTo(((old.average ?? 0) * old.count + added.reduce((x, y) => x + y, 0)) / count, 2);
    };
    expectAverage('t-alice', [2]);
    expectAverage('t-bob', [5]);
    const overall = before.satisfaction;
    expect(after.satisfaction.count).toBe(overall.count + 2);
    expect(after.satisfaction.average).toBeCloseTo(((overall.average ?? 0) * overall.count + 7) / (overall.count + 2), 2);
  });

  it('takes exactly one of two ratings sent at once', async () => {
    const { customer, sessionId } = await endedCall();
    const answers = await Promise.all([request(customer, 'rating:submit', { score: 3 }), request(customer, 'rating:submit', { score: 5 })]);
    expect(answers.filter((a) => a.ok)).toHaveLength(1);
    expect(answers.filter((a) => !a.ok)).toMatchObject([{ error: { code: 'invalid_state' } }]);
    expect(await ratingsOf(sessionId)).toHaveLength(1);
  });
});
