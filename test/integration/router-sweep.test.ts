import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { QueueRouter, type RouterOptions } from '../../signaling/router.ts';
import type { StaffIdentity } from '../../src/auth/staff-tokens.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { OfferRecord, StateStore, TellerRecord } from '../../src/store/types.ts';
import { openTestEvidence, type TestEvidence } from '../helpers/evidence.ts';
import { session } from '../unit/store/conformance.ts';
import { deletePrefix, openTestStore, silentLog, testPrefix } from './store/redis-helpers.ts';

/*
 * Two nodes' routers on one shared store. Offer timeouts and wrap-up ends are timers on the node
 * that started them; when that node dies (here: its router is closed, its timers gone), the other
 * node's sweep must end them. Time is an injected clock moved by the test; the sweeps' own
 * interval is real but short, and every wait is for a state, never for a duration.
 */

const prefixes: string[] = [];
afterAll(async () => {
  for (const p of prefixes) await deletePrefix(p);
});

const backends: { name: string; open: () => Promise<[StateStore, StateStore]> }[] = [
  {
    name: 'memory',
    // One process's memory is the one store both routers share.
    open: async () => {
      const store = new MemoryStore();
      return [store, store];
    },
  },
  {
    name: 'redis',
    // Two connections on one prefix: two nodes.
    open: async () => {
      const p = testPrefix();
      prefixes.push(p);
      return [await openTestStore(p), await openTestStore(p)];
    },
  },
];

const GRACE_MS = 1000;

interface Node {
  router: QueueRouter;
  store: StateStore;
  /** Offers this node's router made, and the teller records it wrote, in order. */
  offers: OfferRecord[];
  tellers: TellerRecord[];
}

interface Cluster {
  a: Node;
  b: Node;
  /** One ledger for both nodes, as with a shared PostgreSQL ledger: counts every entry once. */
  evidence: TestEvidence;
  clock: { now: number };
}

const running: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of running.splice(0)) await stop();
});

function staff(id: string): StaffIdentity {
  return { id, displayName: id, role: 'teller', skills: { businessTypes: ['consultation'], languages: ['en'] } };
}

const until = async (cond: () => Promise<boolean> | boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe.each(backends)('router sweep on two nodes, $name store', ({ open }) => {
  async function cluster(optsA: Partial<RouterOptions> = {}, optsB: Partial<RouterOptions> = {}): Promise<Cluster> {
    const [storeA, storeB] = await open();
    const evidence = await openTestEvidence();
    const clock = { now: 1_700_000_000_000 };
    const node = (store: StateStore, opts: Partial<RouterOptions>): Node => {
      const router = new QueueRouter(
        store,
        evidence.sink,
        {
          mode: 'longest_idle',
          // Long, so the owning node's own timers never fire during a test: only a sweep ends things.
          offerTimeoutMs: 60_000,
          maxMissedOffers: 3,
          wrapUpMs: 60_000,
          priorityAgeingS: 60,
          declineCooldownMs: 60_000,
          sweepIntervalMs: 10,
          sweepGraceMs: GRACE_MS,
          now: () => clock.now,
          ...opts,
        },
        silentLog,
      );
      const n: Node = { router, store, offers: [], tellers: [] };
      router.on('offer', (o) => n.offers.push(o));
      router.on('teller', (t) => n.tellers.push(t));
      return n;
    };
    const c = { a: node(storeA, optsA), b: node(storeB, optsB), evidence, clock };
    running.push(async () => {
      c.a.router.close();
      c.b.router.close();
      // Let a sweep or routing pass that was already under way finish before its store closes.
      await c.b.router.route();
      await storeA.close();
      if (storeB !== storeA) await storeB.close();
      await evidence.close();
    });
    return c;
  }

  async function newSession(c: Cluster): Promise<string> {
    const s = session({ tokenUsed: true, createdAt: c.clock.now });
    await c.a.store.createSession(s);
    return s.id;
  }

  async function availableTeller(n: Node, id: string): Promise<void> {
    await n.router.tellerOnline(staff(id));
    await n.router.setAvailability(id, 'available');
  }

  const offerClosed = (c: Cluster, offerId: string) =>
    c.evidence.entries().filter((e) => e.type === 'offer.closed' && e.payload.offerId === offerId);
  const transitions = (c: Cluster, sessionId: string) =>
    c.evidence
      .entries(sessionId)
      .filter((e) => e.type === 'session.transition')
      .map((e) => [e.payload.to, e.payload.reason]);

  it("times out the offer of a node that died, and the other node's routing offers the session again", async () => {
    const c = await cluster();
    await availableTeller(c.a, 't1');
    const s = await newSession(c);
    await c.a.router.enqueue(s);
    expect(c.a.offers).toHaveLength(1);
    const offer = c.a.offers[0]!;
    expect(await c.b.store.getTeller('t1')).toMatchObject({ state: 'reserved', offerId: offer.id });

    c.a.router.close(); // node A dies: its offer timer is gone

    // Expired, but within the grace: the sweep leaves it to the owner's (now dead) timer.
    c.clock.now = offer.expiresAt + GRACE_MS / 2;
    await c.b.router.sweep();
    expect((await c.b.store.getOffer(offer.id))!.state).toBe('pending');
    expect(offerClosed(c, offer.id)).toEqual([]);

    // Past the grace: B's periodic sweep times it out and B's routing offers the session again.
    c.clock.now = offer.expiresAt + GRACE_MS + 1;
    await until(() => c.b.offers.length === 1);

    expect(await c.b.store.getOffer(offer.id)).toMatchObject({ state: 'timeout', reason: 'not_answered' });
    const closed = offerClosed(c, offer.id);
    expect(closed).toHaveLength(1);
    expect(closed[0]!.payload).toMatchObject({ state: 'timeout', tellerId: 't1' });
    expect(closed[0]!.actor).toBe('system');
    // The teller went back to available with the miss counted (keeping their turn), then was reserved again.
    const afterTimeout = c.b.tellers.filter((t) => t.id === 't1').map((t) => [t.state, t.missedOffers]);
    expect(afterTimeout).toEqual([
      ['available', 1],
      ['reserved', 1],
    ]);
    expect(transitions(c, s)).toEqual([
      ['queued', 'joined_queue'],
      ['offered', 'offer_created'],
      ['queued', 'offer_timeout'],
      ['offered', 'offer_created'],
    ]);
    const again = c.b.offers[0]!;
    expect(again).toMatchObject({ sessionId: s, tellerId: 't1', state: 'pending' });
    expect(again.id).not.toBe(offer.id);
    expect(await c.a.store.getSession(s)).toMatchObject({ state: 'offered', offerId: again.id, tellerId: 't1' });
    expect(await c.a.store.getTeller('t1')).toMatchObject({ state: 'reserved', offerId: again.id, sessionId: s, missedOffers: 1 });
    expect(await c.a.store.queuedSessionIds()).toEqual([s]);
  });

  it('ends the wrap-up of a teller whose node died, and the other node offers them the next session', async () => {
    const c = await cluster();
    await availableTeller(c.a, 't1');
    const first = await newSession(c);
    await c.a.router.enqueue(first);
    await c.a.router.accept('t1', c.a.offers[0]!.id);
    await c.a.router.endCall(first, 't1', 'teller_hangup');
    const wrapping = (await c.b.store.getTeller('t1'))!;
    expect(wrapping.state).toBe('wrap_up');
    expect(wrapping.wrapUpUntil).toBe(c.clock.now + 60_000);

    // Another customer waits, joining through B; the only teller is wrapping up.
    const next = await newSession(c);
    await c.b.router.enqueue(next);
    expect(c.b.offers).toEqual([]);

    c.a.router.close(); // node A dies: its wrap-up timer is gone

    c.clock.now = wrapping.wrapUpUntil! + GRACE_MS / 2;
    await c.b.router.sweep();
    expect((await c.b.store.getTeller('t1'))!.state).toBe('wrap_up');

    c.clock.now = wrapping.wrapUpUntil! + GRACE_MS + 1;
    await until(() => c.b.offers.length === 1);
    expect(c.b.offers[0]).toMatchObject({ sessionId: next, tellerId: 't1' });
    const byB = c.b.tellers.filter((t) => t.id === 't1');
    expect(byB[0]).toMatchObject({ state: 'available', idleSince: c.clock.now });
    expect(byB[0]!.wrapUpUntil).toBeUndefined();
    expect(await c.a.store.getTeller('t1')).toMatchObject({ state: 'reserved', sessionId: next });
    expect(await c.a.store.getSession(next)).toMatchObject({ state: 'offered', tellerId: 't1' });
  });

  it('with both nodes alive, closes an overdue offer exactly once however many sweeps race for it', async () => {
    const c = await cluster();
    await availableTeller(c.a, 't1');
    const s = await newSession(c);
    await c.a.router.enqueue(s);
    const offer = c.a.offers[0]!;

    c.clock.now = offer.expiresAt + GRACE_MS + 1;
    // Explicit sweeps on both nodes at once, racing each other and both nodes' periodic sweeps.
    await Promise.all([c.a.router.sweep(), c.b.router.sweep(), c.b.router.sweep(), c.a.router.sweep()]);
    // Wait for any sweep still under way (a sweep asked for meanwhile is that one) and its routing.
    await Promise.all([c.a.router.sweep(), c.b.router.sweep()]);
    await Promise.all([c.a.router.route(), c.b.router.route()]);

    expect(await c.a.store.getOffer(offer.id)).toMatchObject({ state: 'timeout' });
    expect(offerClosed(c, offer.id)).toHaveLength(1);
    // Timed out once: one miss, one re-offer, one way back to the queue.
    const offersMade = [...c.a.offers, ...c.b.offers];
    expect(offersMade).toHaveLength(2);
    expect(offersMade[1]).toMatchObject({ sessionId: s, tellerId: 't1' });
    expect(await c.b.store.getTeller('t1')).toMatchObject({ state: 'reserved', offerId: offersMade[1]!.id, missedOffers: 1 });
    expect(transitions(c, s).filter(([to]) => to === 'queued')).toEqual([
      ['queued', 'joined_queue'],
      ['queued', 'offer_timeout'],
    ]);
  });

  it('leaves an accepted offer alone even when its deadline has long passed', async () => {
    const c = await cluster();
    await availableTeller(c.a, 't1');
    const s = await newSession(c);
    await c.a.router.enqueue(s);
    const offer = c.a.offers[0]!;
    await c.a.router.accept('t1', offer.id);

    c.clock.now = offer.expiresAt + 10 * GRACE_MS;
    await Promise.all([c.a.router.sweep(), c.b.router.sweep()]);
    expect(await c.b.store.getOffer(offer.id)).toMatchObject({ state: 'accepted' });
    expect(offerClosed(c, offer.id).map((e) => e.payload.state)).toEqual(['accepted']);
    expect(await c.b.store.getTeller('t1')).toMatchObject({ state: 'busy', sessionId: s });
    expect(await c.b.store.getSession(s)).toMatchObject({ state: 'in_call' });
  });

  it('a paused router sweeps no more; the live node still does', async () => {
    // B sweeps only when asked, so nothing but A could have acted before B is asked.
    const c = await cluster({}, { sweepIntervalMs: 0 });
    await availableTeller(c.a, 't1');
    const s = await newSession(c);
    await c.a.router.enqueue(s);
    const offer = c.a.offers[0]!;

    c.a.router.pause(); // draining: no more offers, no more sweeps
    c.clock.now = offer.expiresAt + GRACE_MS + 1;
    await c.a.router.sweep();
    expect((await c.a.store.getOffer(offer.id))!.state).toBe('pending');

    await c.b.router.sweep();
    expect((await c.a.store.getOffer(offer.id))!.state).toBe('timeout');
    expect(offerClosed(c, offer.id)).toHaveLength(1);
    await until(() => c.b.offers.length === 1);
    expect(c.b.offers[0]).toMatchObject({ sessionId: s, tellerId: 't1' });
  });
});
