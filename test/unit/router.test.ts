import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { QueueRouter, type RouterOptions } from '../../signaling/router.ts';
import type { BusinessType } from '../../signaling/protocol.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { SessionRecord } from '../../src/store/types.ts';
import type { StaffIdentity } from '../../src/auth/staff-tokens.ts';
import { createLogger } from '../../src/logger.ts';
import { openTestEvidence, type TestEvidence } from '../helpers/evidence.ts';

const log = createLogger('silent');

interface Harness {
  router: QueueRouter;
  store: MemoryStore;
  evidence: TestEvidence;
  clock: { now: number };
  offers: { sessionId: string; tellerId: string; offerId: string }[];
}

const open: Harness[] = [];

async function harness(opts: Partial<RouterOptions> = {}): Promise<Harness> {
  const store = new MemoryStore();
  const evidence = await openTestEvidence();
  const clock = { now: 1_000_000 };
  const router = new QueueRouter(
    store,
    evidence.sink,
    {
      mode: 'longest_idle',
      offerTimeoutMs: 60_000,
      maxMissedOffers: 2,
      wrapUpMs: 0,
      priorityAgeingS: 60,
      declineCooldownMs: 60_000,
      now: () => clock.now,
      ...opts,
    },
    log,
  );
  const offers: Harness['offers'] = [];
  router.on('offer', (o) => offers.push({ sessionId: o.sessionId, tellerId: o.tellerId, offerId: o.id }));
  const h = { router, store, evidence, clock, offers };
  open.push(h);
  return h;
}

afterEach(async () => {
  for (const h of open.splice(0)) {
    h.router.close();
    await h.evidence.close();
  }
});

async function session(h: Harness, fields: Partial<SessionRecord> & { businessType?: BusinessType } = {}): Promise<string> {
  const id = randomUUID();
  await h.store.createSession({
    id,
    businessType: 'consultation',
    language: 'en',
    priority: 0,
    customerRef: 'C-1',
    state: 'created',
    createdAt: h.clock.now,
    tokenHash: randomUUID(),
    tokenExpiresAt: h.clock.now + 60_000,
    tokenUsed: true,
    declinedBy: {},
    createdBy: 'test',
    ...fields,
  });
  return id;
}

function staff(id: string, businessTypes: BusinessType[] = ['consultation', 'corporate_account_opening'], languages = ['en']): StaffIdentity {
  return { id, displayName: id, role: 'teller', skills: { businessTypes, languages } };
}

async function availableTeller(h: Harness, s: StaffIdentity): Promise<void> {
  await h.router.tellerOnline(s);
  await h.router.setAvailability(s.id, 'available');
}

const stateOf = async (h: Harness, id: string) => (await h.store.getSession(id))!.state;
const tellerState = async (h: Harness, id: string) => (await h.store.getTeller(id))!.state;
const until = async (cond: () => Promise<boolean>, ms = 3000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('queue router', () => {
  it('offers only to tellers with both the business type and the language', async () => {
    const h = await harness();
    await availableTeller(h, staff('t-en', ['consultation'], ['en']));
    await availableTeller(h, staff('t-fr-wealth', ['wealth_product'], ['fr']));
    const fr = await session(h, { businessType: 'consultation', language: 'fr' });
    await h.router.enqueue(fr);
    expect(h.offers).toEqual([]);
    expect(await stateOf(h, fr)).toBe('queued');

    await availableTeller(h, staff('t-fr', ['consultation'], ['fr', 'de']));
    expect(h.offers.map((o) => [o.sessionId, o.tellerId])).toEqual([[fr, 't-fr']]);
    expect(await stateOf(h, fr)).toBe('offered');
    expect(await tellerState(h, 't-fr')).toBe('reserved');
  });

  it('serves higher priority first, then the longest waiting', async () => {
    const h = await harness();
    const first = await session(h);
    await h.router.enqueue(first);
    h.clock.now += 1000;
    const urgent = await session(h, { priority: 5 });
    await h.router.enqueue(urgent);
    h.clock.now += 1000;
    const second = await session(h);
    await h.router.enqueue(second);

    for (const t of ['a', 'b', 'c']) {
      await availableTeller(h, staff(t));
      h.clock.now += 10;
    }
    expect(h.offers.map((o) => o.sessionId)).toEqual([urgent, first, second]);
  });

  it('ages priority so a long-waiting low-priority session is not starved', async () => {
    const h = await harness({ priorityAgeingS: 60 });
    const old = await session(h, { priority: 0 });
    await h.router.enqueue(old);
    h.clock.now += 3 * 60_000 + 1; // three levels of ageing
    const fresh = await session(h, { priority: 2 });
    await h.router.enqueue(fresh);
    expect(h.router.effectivePriority((await h.store.getSession(old))!)).toBe(3);
    await availableTeller(h, staff('a'));
    expect(h.offers[0]!.sessionId).toBe(old);
  });

  it('offers to the longest-idle eligible teller', async () => {
    const h = await harness();
    await availableTeller(h, staff('recent'));
    h.clock.now -= 50_000; // 'idle' became available earlier
    await availableTeller(h, staff('idle'));
    h.clock.now += 50_000;
    const s = await session(h);
    await h.router.enqueue(s);
    expect(h.offers).toEqual([expect.objectContaining({ sessionId: s, tellerId: 'idle' })]);
  });

  it('in random mode picks among eligible tellers with the configured randomness', async () => {
    const picks = [0.99, 0.0];
    const h = await harness({ mode: 'random', random: () => picks.shift()! });
    await availableTeller(h, staff('a'));
    await availableTeller(h, staff('b'));
    await availableTeller(h, staff('c', ['wealth_product']));
    const s1 = await session(h);
    await h.router.enqueue(s1);
    const s2 = await session(h);
    await h.router.enqueue(s2);
    // 0.99 → last of the two eligible (b); 0.0 → first of the rest (a). 'c' is never eligible.
    expect(h.offers.map((o) => o.tellerId)).toEqual(['b', 'a']);
  });

  it('puts an unanswered offer back in the queue, keeps its place, and sets the teller away after N misses', async () => {
    const h = await harness({ offerTimeoutMs: 50, maxMissedOffers: 2 });
    await availableTeller(h, staff('sleepy'));
    const s = await session(h);
    await h.router.enqueue(s);
    const queuedAt = (await h.store.getSession(s))!.queuedAt;
    expect(h.offers).toHaveLength(1);
    // First miss: the teller stays available and gets the session offered again after the cooldown-free timeout.
    await until(async () => h.offers.length === 2);
    const firstOffer = (await h.store.getOffer(h.offers[0]!.offerId))!;
    expect(firstOffer.state).toBe('timeout');
    expect((await h.store.getSession(s))!.queuedAt).toBe(queuedAt);
    // Second miss: away.
    await until(async () => (await tellerState(h, 'sleepy')) === 'away');
    expect(await stateOf(h, s)).toBe('queued');
    expect((await h.store.getOffer(h.offers[1]!.offerId))!.state).toBe('timeout');

    await availableTeller(h, staff('awake'));
    expect(h.offers[2]).toEqual(expect.objectContaining({ sessionId: s, tellerId: 'awake' }));
    const offerOutcomes = h.evidence.entries(s).filter((e) => e.type === 'offer.closed').map((e) => e.payload.state);
    expect(offerOutcomes).toEqual(['timeout', 'timeout']);
  });

  it('on decline, offers to another teller and not again to the one who declined', async () => {
    const h = await harness();
    await availableTeller(h, staff('first'));
    h.clock.now += 10;
    await availableTeller(h, staff('second'));
    const s = await session(h);
    await h.router.enqueue(s);
    expect(h.offers[0]!.tellerId).toBe('first');
    await h.router.decline('first', h.offers[0]!.offerId);
    expect(h.offers[1]).toEqual(expect.objectContaining({ sessionId: s, tellerId: 'second' }));
    expect(await tellerState(h, 'first')).toBe('available');
    await h.router.decline('second', h.offers[1]!.offerId);
    expect(h.offers).toHaveLength(2);
    expect(await stateOf(h, s)).toBe('queued');
  });

  it('cancels the offer when the customer abandons while offered, and removes a queued customer', async () => {
    const h = await harness();
    const waiting = await session(h);
    await h.router.enqueue(waiting);
    await h.router.abandon(waiting, 'customer_left');
    expect(await stateOf(h, waiting)).toBe('abandoned');
    expect(await h.store.queuedSessionIds()).toEqual([]);

    await availableTeller(h, staff('t'));
    expect(h.offers).toEqual([]); // nothing left to offer
    const offered = await session(h);
    await h.router.enqueue(offered);
    expect(h.offers).toHaveLength(1);
    await h.router.abandon(offered, 'customer_left');
    expect((await h.store.getOffer(h.offers[0]!.offerId))!).toEqual(expect.objectContaining({ state: 'canceled', reason: 'customer_left' }));
    expect(await tellerState(h, 't')).toBe('available');
    expect(await stateOf(h, offered)).toBe('abandoned');
    await expect(h.router.accept('t', h.offers[0]!.offerId)).rejects.toMatchObject({ code: 'invalid_state' });
  });

  it('requeues and re-offers when the offered teller disconnects', async () => {
    const h = await harness();
    await availableTeller(h, staff('gone'));
    h.clock.now += 10;
    const s = await session(h);
    await h.router.enqueue(s);
    await h.router.tellerOnline(staff('stays'));
    await h.router.setAvailability('stays', 'available');
    expect(h.offers.map((o) => o.tellerId)).toEqual(['gone']);
    await h.router.tellerOffline('gone');
    expect((await h.store.getOffer(h.offers[0]!.offerId))!.state).toBe('canceled');
    expect(await tellerState(h, 'gone')).toBe('offline');
    expect(h.offers[1]).toEqual(expect.objectContaining({ sessionId: s, tellerId: 'stays' }));
  });

  it('accepts into a call, refuses a second accept and another teller, then wraps up', async () => {
    const h = await harness({ wrapUpMs: 60 });
    await availableTeller(h, staff('t'));
    await availableTeller(h, staff('other'));
    const s = await session(h);
    await h.router.enqueue(s);
    const offer = h.offers[0]!;
    await expect(h.router.accept(offer.tellerId === 't' ? 'other' : 't', offer.offerId)).rejects.toMatchObject({ code: 'not_found' });
    const { session: inCall } = await h.router.accept(offer.tellerId, offer.offerId);
    expect(inCall.state).toBe('in_call');
    expect(inCall.callId).toMatch(/^[0-9a-f-]{36}$/);
    await expect(h.router.accept(offer.tellerId, offer.offerId)).rejects.toMatchObject({ code: 'invalid_state' });
    expect(await tellerState(h, offer.tellerId)).toBe('busy');
    await expect(h.router.setAvailability(offer.tellerId, 'away')).rejects.toMatchObject({ code: 'invalid_state' });

    await h.router.endCall(s, offer.tellerId, 'teller_hangup');
    expect(await stateOf(h, s)).toBe('ended');
    expect(await tellerState(h, offer.tellerId)).toBe('wrap_up');
    await until(async () => (await tellerState(h, offer.tellerId)) === 'available');
    const transitions = h.evidence.entries(s).filter((e) => e.type === 'session.transition').map((e) => e.payload.to);
    expect(transitions).toEqual(['queued', 'offered', 'in_call', 'ended']);
  });

  it('computes queue positions per skill group and estimated waits', async () => {
    const h = await harness();
    const a = await session(h, { businessType: 'consultation' });
    const b = await session(h, { businessType: 'corporate_account_opening' });
    const c = await session(h, { businessType: 'consultation' });
    for (const id of [a, b, c]) {
      await h.router.enqueue(id);
      h.clock.now += 100;
    }
    const positions = await h.router.queuePositions();
    expect(positions.get(a)!.position).toBe(1);
    expect(positions.get(b)!.position).toBe(1);
    expect(positions.get(c)!.position).toBe(2);
    // No teller on shift: every position waits a full average call.
    expect(positions.get(c)!.estimatedWaitS).toBeGreaterThan(positions.get(a)!.estimatedWaitS);
  });

  it('shares one pending routing pass among the calls made while it waits for the lock, and it still offers what they asked for', async () => {
    const h = await harness();
    await availableTeller(h, staff('t-1'));
    let release!: () => void;
    const held = h.store.withLock('routing', () => new Promise<void>((r) => (release = r)));
    // While the lock is held, a customer joins: the pass that then runs must see them.
    const id = await session(h);
    await h.store.updateSession(id, (s) => ({ ...s, state: 'queued', queuedAt: h.clock.now }));
    await h.store.enqueue(id);
    const passes = [h.router.route(), h.router.route(), h.router.route()];
    expect(passes[1]).toBe(passes[0]);
    expect(passes[2]).toBe(passes[0]);
    let reads = 0;
    const listTellers = h.store.listTellers.bind(h.store);
    h.store.listTellers = async () => {
      reads++;
      return listTellers();
    };
    release();
    await held;
    await Promise.all(passes);
    expect(reads).toBe(1);
    expect(await stateOf(h, id)).toBe('offered');
    // Once a pass has run, a new call makes a new one.
    const later = h.router.route();
    expect(later).not.toBe(passes[0]);
    await later;
    expect(reads).toBe(2);
  });
});
