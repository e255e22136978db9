/**
 * The supervisor board's live part (issue 6): `board:update` on connect and whenever the router
 * moves something, coalesced to at most one push per second; queues by skill, tellers with their
 * state and call duration. Every snapshot is checked against the schema the page checks it with.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { BOARD_MIN_INTERVAL_MS } from '../../signaling/board.ts';
import { boardSnapshotSchema, type BoardSnapshot } from '../../signaling/protocol.ts';
import { callInProgress } from '../helpers/call.ts';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { outcome, request, SocketClients, type Client } from '../helpers/socket.ts';

let server: TestServer;
const clients = new SocketClients(() => server.url);
/** No demo teller has French wealth products: such a customer waits in the queue. */
const UNSERVED = { businessType: 'wealth_product', language: 'fr', priority: 0, customerRef: 'CUST-0002' };

beforeAll(async () => {
  server = await startTestServer();
});
afterEach(() => clients.closeAll());
afterAll(async () => {
  await server?.close();
});

/** A supervisor console that records every board it is sent (with when it arrived). */
async function watchBoard(): Promise<{ socket: Client; boards: Array<{ board: BoardSnapshot }>; until(pred: (b: BoardSnapshot) => boolean, from?: number): Promise<BoardSnapshot> }> {
  const socket = clients.open('/supervisor', await loginStaff(server.url, 'sam', 'sam-demo-pass'));
  const boards: Array<{ board: BoardSnapshot }> = [];
  const waiters: Array<{ pred: (b: BoardSnapshot) => boolean; resolve: (b: BoardSnapshot) => void }> = [];
  socket.on('board:update', (raw) => {
    const board = boardSnapshotSchema.parse(raw);
    boards.push({ board });
    for (const w of waiters.splice(0)) {
      if (w.pred(board)) w.resolve(board);
      else waiters.push(w);
    }
  });
  expect(await outcome(socket)).toEqual({ connected: true });
  return {
    socket,
    boards,
    /** The first board, from the `from`-th received on, for which pred holds (waits for it). */
    until: (pred, from = 0) => {
      const seen = boards.slice(from).find((b) => pred(b.board));
      if (seen) return Promise.resolve(seen.board);
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}

describe('supervisor board', () => {
  it('shows a waiting customer in their queue and the tellers as they change state', async () => {
    const watch = await watchBoard();
    const first = await watch.until(() => true);
    expect(first.queues.find((q) => q.businessType === 'wealth_product' && q.language === 'fr')).toBeUndefined();

    // A customer nobody can serve waits: the board shows the queue with its length.
    const { customerToken, sessionId } = await createSession(server, UNSERVED);
    const customer = clients.open('/customer', customerToken);
    expect(await outcome(customer)).toEqual({ connected: true });
    expect(await request(customer, 'queue:join', { consent: true })).toMatchObject({ ok: true });
    const queued = await watch.until((b) => b.queues.some((q) => q.businessType === 'wealth_product' && q.language === 'fr'));
    expect(queued.queues.find((q) => q.businessType === 'wealth_product' && q.language === 'fr')).toMatchObject({ length: 1, offered: 0 });
    expect(queued.queues.find((q) => q.businessType === 'wealth_product')!.oldestWaitS).toBeGreaterThanOrEqual(0);

    // A teller in a call shows as busy with the call's duration; the queue keeps its customer.
    const call = await callInProgress(clients, server, undefined, { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-0003' });
    const busy = await watch.until((b) => b.tellers.some((t) => t.tellerId === 't-alice' && t.state === 'busy'));
    const alice = busy.tellers.find((t) => t.tellerId === 't-alice')!;
    expect(alice).toMatchObject({ displayName: 'Alice Teller', state: 'busy' });
    expect(alice.callDurationS).not.toBeNull();
    expect(busy.queues.find((q) => q.businessType === 'wealth_product' && q.language === 'fr')).toMatchObject({ length: 1 });

    // The call statistics (src/operations/call-stats.ts) count the answered call.
    const counted = await watch.until((b) => (b.callStats?.answered ?? 0) >= 1);
    expect(counted.callStats!.connectionRate === null || (counted.callStats!.connectionRate >= 0 && counted.callStats!.connectionRate <= 1)).toBe(true);

    // The call ends and the teller steps away: no call duration any more.
    expect(await request(call.customer, 'call:hangup', {})).toMatchObject({ ok: true });
    expect(await request(call.teller, 'teller:availability', { status: 'away' })).toMatchObject({ ok: true });
    const away = await watch.until((b) => b.tellers.some((t) => t.tellerId === 't-alice' && t.state === 'away'));
    expect(away.tellers.find((t) => t.tellerId === 't-alice')).toMatchObject({ state: 'away', callDurationS: null });

    // The customer gives up: the queue is gone from the board.
    expect(await request(customer, 'queue:leave', {})).toMatchObject({ ok: true });
    const left = await watch.until((b) => !b.queues.some((q) => q.businessType === 'wealth_product' && q.language === 'fr'));
    expect(left.queues.find((q) => q.businessType === 'wealth_product')).toBeUndefined();
    expect((await server.app.store.getSession(sessionId))!.state).toBe('abandoned');
    // One answered, one abandoned (it had waited in the queue).
    const abandoned = await watch.until((b) => (b.callStats?.abandonmentRate ?? 0) > 0);
    expect(abandoned.callStats).toMatchObject({ answered: 1, abandonmentRate: 0.5 });
  });

  it('coalesces bursts: never more than one push per second after the first', async () => {
    const watch = await watchBoard();
    await watch.until(() => true);
    const start = watch.boards.length;
    let events = 0;
    const count = () => events++;
    const names = ['queueChanged', 'teller', 'session', 'offerClosed'] as const;
    for (const n of names) server.app.router.on(n, count);
    onTestFinished(() => {
      for (const n of names) server.app.router.off(n, count);
    });
    // A burst of router events: five customers join, then leave.
    const customers: Client[] = [];
    for (let i = 0; i < 5; i++) {
      const { customerToken } = await createSession(server, { ...UNSERVED, customerRef: `CUST-1${i}` });
      const c = clients.open('/customer', customerToken);
      expect(await outcome(c)).toEqual({ connected: true });
      expect(await request(c, 'queue:join', { consent: true })).toMatchObject({ ok: true });
      customers.push(c);
    }
    for (const c of customers) expect(await request(c, 'queue:leave', {})).toMatchObject({ ok: true });
    // The last change reaches the board (at the latest one interval later).
    const leftAt = Date.now(); // the server runs in this process: the same clock as board.at
    await watch.until((b) => b.at >= leftAt && !b.queues.some((q) => q.businessType === 'wealth_product' && q.language === 'fr'), start);
    // The pushes (the connect snapshot is sent on its own) are taken at least the interval apart,
    // by the server's clock, and fewer than the router's events.
    const pushes = watch.boards.slice(start).map((b) => b.board.at);
    expect(pushes.length).toBeGreaterThan(0);
    expect(pushes.length).toBeLessThan(events);
    for (let i = 1; i < pushes.length; i++) expect(pushes[i]! - pushes[i - 1]!).toBeGreaterThanOrEqual(BOARD_MIN_INTERVAL_MS);
  });

  it('is for supervisors only', async () => {
    const teller = clients.open('/supervisor', await loginStaff(server.url, 'alice', 'alice-demo-pass'));
    expect(await outcome(teller)).toMatchObject({ connected: false, code: 'forbidden' });
  });
});
