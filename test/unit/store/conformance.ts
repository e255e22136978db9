import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { NotFoundError, type OfferRecord, type SessionRecord, type StateStore, type TellerRecord } from '../../../src/store/types.ts';

/**
 * What every StateStore must do, whatever keeps the state. Run by test/unit/store/memory-store.test.ts
 * (MemoryStore) and test/integration/store/redis-store.test.ts (RedisStore, real Redis).
 * `open` gives a fresh, empty store for each test; the suite closes it.
 */
export function describeStoreConformance(name: string, open: () => Promise<StateStore>): void {
  describe(`StateStore conformance: ${name}`, () => {
    const opened: StateStore[] = [];
    const fresh = async (): Promise<StateStore> => {
      const store = await open();
      opened.push(store);
      return store;
    };
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    describe('sessions', () => {
      it('creates and reads back a session exactly, nested values included', async () => {
        const store = await fresh();
        const s = fullSession();
        await store.createSession(s);
        const got = await store.getSession(s.id);
        expect(got).toStrictEqual(s);
        // 128 floats survive bit for bit (face descriptors are Float32 values widened to doubles).
        expect(got!.reference!.descriptor).toHaveLength(128);
        got!.reference!.descriptor.forEach((v, i) => expect(Object.is(v, s.reference!.descriptor[i])).toBe(true));
        expect(await store.getSession(randomUUID())).toBeUndefined();
      });

      it('hands out copies: mutating what was written or read does not change the stored record', async () => {
        const store = await fresh();
        const s = session();
        await store.createSession(s);
        s.declinedBy.mallory = 1;
        const got = (await store.getSession(s.id))!;
        expect(got.declinedBy).toStrictEqual({});
        got.state = 'ended';
        expect((await store.getSession(s.id))!.state).toBe('created');
      });

      it('refuses to create a session whose id exists, and keeps the first', async () => {
        const store = await fresh();
        const s = session();
        await store.createSession(s);
        await expect(store.createSession({ ...s, customerRef: 'OTHER' })).rejects.toThrow(/exists/);
        expect((await store.getSession(s.id))!.customerRef).toBe(s.customerRef);
      });

      it('updates through the updater and returns the record as written', async () => {
        const store = await fresh();
        const s = session();
        await store.createSession(s);
        const updated = await store.updateSession(s.id, (cur) => ({ ...cur, state: 'queued', queuedAt: 1234, declinedBy: { t1: 99 } }));
        expect(updated).toStrictEqual({ ...s, state: 'queued', queuedAt: 1234, declinedBy: { t1: 99 } });
        expect(await store.getSession(s.id)).toStrictEqual(updated);
      });

      it('reads a field set to undefined by an updater as absent', async () => {
        const store = await fresh();
        const s = { ...session(), offerId: 'o-1', tellerId: 't-1' };
        await store.createSession(s);
        await store.updateSession(s.id, (cur) => ({ ...cur, offerId: undefined, tellerId: undefined }));
        const got = (await store.getSession(s.id))!;
        expect(got.offerId).toBeUndefined();
        expect(got.tellerId).toBeUndefined();
        expect(got.id).toBe(s.id);
      });

      it('writes nothing when the updater throws, and passes its error through', async () => {
        const store = await fresh();
        const s = session();
        await store.createSession(s);
        class Refused extends Error {}
        await expect(
          store.updateSession(s.id, (cur) => {
            cur.state = 'ended';
            throw new Refused('no');
          }),
        ).rejects.toBeInstanceOf(Refused);
        expect(await store.getSession(s.id)).toStrictEqual(s);
      });

      it('throws NotFoundError updating a session that does not exist', async () => {
        const store = await fresh();
        const id = randomUUID();
        const err = await store.updateSession(id, (s) => s).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(NotFoundError);
        expect(err).toMatchObject({ what: 'session', id });
        expect(await store.getSession(id)).toBeUndefined();
      });

      it('finds a session by its join token hash and, once set, by its resume token hash', async () => {
        const store = await fresh();
        const s = session();
        const other = session();
        await store.createSession(s);
        await store.createSession(other);
        expect((await store.findSessionByTokenHash(s.tokenHash))?.id).toBe(s.id);
        expect((await store.findSessionByTokenHash(other.tokenHash))?.id).toBe(other.id);
        const resumeHash = randomUUID();
        expect(await store.findSessionByTokenHash(resumeHash)).toBeUndefined();
        await store.updateSession(s.id, (cur) => ({ ...cur, tokenUsed: true, resumeTokenHash: resumeHash }));
        const byResume = await store.findSessionByTokenHash(resumeHash);
        expect(byResume).toStrictEqual({ ...s, tokenUsed: true, resumeTokenHash: resumeHash });
        // The join token hash still leads to the session (the caller sees tokenUsed and refuses it).
        expect((await store.findSessionByTokenHash(s.tokenHash))?.tokenUsed).toBe(true);
        expect(await store.findSessionByTokenHash('no-such-hash')).toBeUndefined();
      });

      it('loses no update when many updates of one session run at once', async () => {
        const store = await fresh();
        const s = session();
        await store.createSession(s);
        const n = 50;
        // declinedBy as a counter: every updater reads the current value and writes value + 1.
        await Promise.all(
          Array.from({ length: n }, (_, i) =>
            store.updateSession(s.id, (cur) => ({ ...cur, priority: cur.priority, declinedBy: { ...cur.declinedBy, count: (cur.declinedBy.count ?? 0) + 1, [`t${i}`]: i } })),
          ),
        );
        const got = (await store.getSession(s.id))!;
        expect(got.declinedBy.count).toBe(n);
        expect(Object.keys(got.declinedBy)).toHaveLength(n + 1);
      });

      it('applies one of two racing conditional updates and refuses the other (token spent once)', async () => {
        const store = await fresh();
        const s = session();
        await store.createSession(s);
        const spend = (resume: string) =>
          store.updateSession(s.id, (cur) => {
            if (cur.tokenUsed) throw new Error('token_reused');
            return { ...cur, tokenUsed: true, resumeTokenHash: resume };
          });
        const results = await Promise.allSettled([spend('r1'), spend('r2'), spend('r3'), spend('r4')]);
        const won = results.filter((r) => r.status === 'fulfilled');
        expect(won).toHaveLength(1);
        expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.message)).toEqual([
          'token_reused',
          'token_reused',
          'token_reused',
        ]);
        const resume = (won[0] as PromiseFulfilledResult<SessionRecord>).value.resumeTokenHash!;
        expect((await store.getSession(s.id))!.resumeTokenHash).toBe(resume);
      });
    });

    describe('queue', () => {
      it('holds each session once, in no promised order; dequeue answers true once', async () => {
        const store = await fresh();
        const ids = Array.from({ length: 5 }, () => randomUUID());
        expect(await store.queuedSessionIds()).toEqual([]);
        for (const id of ids) await store.enqueue(id);
        await store.enqueue(ids[2]!);
        await store.enqueue(ids[0]!);
        expect([...(await store.queuedSessionIds())].sort()).toEqual([...ids].sort());
        expect(await store.dequeue(ids[1]!)).toBe(true);
        expect(await store.dequeue(ids[1]!)).toBe(false);
        expect(await store.dequeue(randomUUID())).toBe(false);
        expect([...(await store.queuedSessionIds())].sort()).toEqual(ids.filter((_, i) => i !== 1).sort());
        // Back in the queue after leaving it (an offer that timed out).
        await store.enqueue(ids[1]!);
        expect(await store.queuedSessionIds()).toHaveLength(5);
      });

      it('gives true to exactly one of many concurrent dequeues of the same id', async () => {
        const store = await fresh();
        const id = randomUUID();
        await store.enqueue(id);
        const answers = await Promise.all(Array.from({ length: 20 }, () => store.dequeue(id)));
        expect(answers.filter(Boolean)).toHaveLength(1);
        expect(await store.queuedSessionIds()).toEqual([]);
      });

      it('keeps every id enqueued concurrently', async () => {
        const store = await fresh();
        const ids = Array.from({ length: 40 }, () => randomUUID());
        await Promise.all([...ids, ...ids].map((id) => store.enqueue(id)));
        expect([...(await store.queuedSessionIds())].sort()).toEqual([...ids].sort());
      });
    });

    describe('named indexes', () => {
      it('adds idempotently, removes once, lists members of one index only', async () => {
        const store = await fresh();
        const [a, b] = [randomUUID(), randomUUID()];
        expect(await store.indexMembers('cosign')).toEqual([]);
        await store.addToIndex('cosign', a);
        await store.addToIndex('cosign', a);
        await store.addToIndex('cosign', b);
        await store.addToIndex('other', a);
        expect([...(await store.indexMembers('cosign'))].sort()).toEqual([a, b].sort());
        const removals = await Promise.all(Array.from({ length: 10 }, () => store.removeFromIndex('cosign', a)));
        expect(removals.filter(Boolean)).toHaveLength(1);
        expect(await store.indexMembers('cosign')).toEqual([b]);
        expect(await store.indexMembers('other')).toEqual([a]);
        // The queue is not an index.
        expect(await store.queuedSessionIds()).toEqual([]);
      });
    });

    describe('counters', () => {
      it('adds deltas atomically, whole and fractional, per name; concurrent adders lose nothing', async () => {
        const store = await fresh();
        expect(await store.readCounters('callstats')).toEqual({});
        await Promise.all(Array.from({ length: 20 }, (_, i) => store.addToCounters('callstats', { answered: 1, waitS: 0.5, ...(i % 2 ? { abandoned: 1 } : {}) })));
        await store.addToCounters('other', { answered: 7 });
        expect(await store.readCounters('callstats')).toEqual({ answered: 20, waitS: 10, abandoned: 10 });
        expect(await store.readCounters('other')).toEqual({ answered: 7 });
      });

      it('refuses deltas that are not finite numbers and fields that are not plain names, adding nothing', async () => {
        const store = await fresh();
        const bads: Array<Record<string, number>> = [{ answered: Number.NaN }, { answered: Number.POSITIVE_INFINITY }, { 'a b': 1 }, { answered: '1' as unknown as number }];
        for (const bad of bads) {
          await expect(store.addToCounters('callstats', { ok: 1, ...bad })).rejects.toBeInstanceOf(RangeError);
        }
        expect(await store.readCounters('callstats')).toEqual({});
      });
    });

    describe('tellers', () => {
      it('puts, reads, lists and updates tellers', async () => {
        const store = await fresh();
        const a = teller('alice');
        const b = { ...teller('bob'), state: 'wrap_up' as const, wrapUpUntil: 5000, sessionId: 's-1' };
        expect(await store.listTellers()).toEqual([]);
        await store.putTeller(a);
        await store.putTeller(b);
        expect(await store.getTeller('alice')).toStrictEqual(a);
        expect(await store.getTeller('nobody')).toBeUndefined();
        expect((await store.listTellers()).sort((x, y) => x.id.localeCompare(y.id))).toStrictEqual([a, b]);
        const updated = await store.updateTeller('alice', (t) => ({ ...t, state: 'available', missedOffers: 2 }));
        expect(updated).toStrictEqual({ ...a, state: 'available', missedOffers: 2 });
        expect(await store.getTeller('alice')).toStrictEqual(updated);
        // putTeller replaces the record.
        await store.putTeller({ ...a, displayName: 'Alice B.' });
        expect(await store.getTeller('alice')).toStrictEqual({ ...a, displayName: 'Alice B.' });
        expect(await store.listTellers()).toHaveLength(2);
      });

      it('throws NotFoundError updating an unknown teller; a throwing updater writes nothing', async () => {
        const store = await fresh();
        await expect(store.updateTeller('ghost', (t) => t)).rejects.toBeInstanceOf(NotFoundError);
        await store.putTeller(teller('carl'));
        await expect(
          store.updateTeller('carl', () => {
            throw new Error('abort');
          }),
        ).rejects.toThrow('abort');
        expect(await store.getTeller('carl')).toStrictEqual(teller('carl'));
      });

      it('loses no teller update under concurrency', async () => {
        const store = await fresh();
        await store.putTeller(teller('dora'));
        await Promise.all(Array.from({ length: 50 }, () => store.updateTeller('dora', (t) => ({ ...t, missedOffers: t.missedOffers + 1 }))));
        expect((await store.getTeller('dora'))!.missedOffers).toBe(50);
      });
    });

    describe('offers', () => {
      it('creates, reads and updates offers; NotFoundError for an unknown one', async () => {
        const store = await fresh();
        const o: OfferRecord = { id: randomUUID(), sessionId: randomUUID(), tellerId: 'alice', state: 'pending', createdAt: 10, expiresAt: 20_010 };
        await store.createOffer(o);
        expect(await store.getOffer(o.id)).toStrictEqual(o);
        expect(await store.getOffer(randomUUID())).toBeUndefined();
        const closed = await store.updateOffer(o.id, (cur) => ({ ...cur, state: 'timeout', closedAt: 20_011, reason: 'not_answered' }));
        expect(closed).toStrictEqual({ ...o, state: 'timeout', closedAt: 20_011, reason: 'not_answered' });
        expect(await store.getOffer(o.id)).toStrictEqual(closed);
        await expect(store.updateOffer(randomUUID(), (x) => x)).rejects.toBeInstanceOf(NotFoundError);
      });

      it('closes an offer once when two closers race (accept against timeout)', async () => {
        const store = await fresh();
        const o: OfferRecord = { id: randomUUID(), sessionId: randomUUID(), tellerId: 'alice', state: 'pending', createdAt: 1, expiresAt: 2 };
        await store.createOffer(o);
        const close = (state: 'accepted' | 'timeout') =>
          store.updateOffer(o.id, (cur) => {
            if (cur.state !== 'pending') throw new Error(`already ${cur.state}`);
            return { ...cur, state, closedAt: 3 };
          });
        const results = await Promise.allSettled([close('accepted'), close('timeout')]);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        const final = (await store.getOffer(o.id))!.state;
        expect(results.find((r) => r.status === 'fulfilled')).toMatchObject({ value: { state: final } });
      });
    });

    describe('withLock', () => {
      it('never lets two holders of one lock overlap, and runs every holder', async () => {
        const store = await fresh();
        let inside = 0;
        let maxInside = 0;
        const order: number[] = [];
        await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            store.withLock('routing', async () => {
              inside++;
              maxInside = Math.max(maxInside, inside);
              await tick(i % 3);
              order.push(i);
              inside--;
            }),
          ),
        );
        expect(maxInside).toBe(1);
        expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      });

      it('returns the holder result and releases the lock when the holder throws', async () => {
        const store = await fresh();
        expect(await store.withLock('routing', async () => 42)).toBe(42);
        await expect(
          store.withLock('routing', async () => {
            await tick(1);
            throw new Error('holder failed');
          }),
        ).rejects.toThrow('holder failed');
        // Not held any more: the next holder runs.
        expect(await store.withLock('routing', async () => 'next')).toBe('next');
      });

      it('keeps different lock names independent', async () => {
        const store = await fresh();
        let releaseA!: () => void;
        const aHeld = new Promise<void>((r) => (releaseA = r));
        let aStarted!: () => void;
        const started = new Promise<void>((r) => (aStarted = r));
        const a = store.withLock('a', async () => {
          aStarted();
          await aHeld;
        });
        await started;
        // "b" is free although "a" is held.
        expect(await store.withLock('b', async () => 'b ran')).toBe('b ran');
        releaseA();
        await a;
      });

      it('makes read-modify-write sequences under the lock atomic (claim a queued session once)', async () => {
        const store = await fresh();
        const s = { ...session(), state: 'queued' as const };
        await store.createSession(s);
        await store.enqueue(s.id);
        const claims = await Promise.all(['t1', 't2', 't3', 't4', 't5'].map((t) => claimNext(store, t)));
        expect(claims.filter((c) => c !== undefined)).toEqual([s.id]);
        expect((await store.getSession(s.id))!.state).toBe('offered');
        expect(await store.queuedSessionIds()).toEqual([]);
      });
    });

    it('closes cleanly', async () => {
      const store = await open();
      await store.createSession(session());
      await store.close();
    });
  });
}

/**
 * The router's claim, as a test sees it: under the routing lock, take a waiting session out of the
 * queue and mark it offered to the teller. Answers the claimed session id, or undefined.
 */
export async function claimNext(store: StateStore, tellerId: string, pick: (ids: string[]) => string | undefined = (ids) => ids[0]): Promise<string | undefined> {
  return store.withLock('routing', async () => {
    const queued = await store.queuedSessionIds();
    const id = pick(queued);
    if (id === undefined) return undefined;
    const current = await store.getSession(id);
    if (current?.state !== 'queued') return undefined;
    if (!(await store.dequeue(id))) return undefined;
    await store.updateSession(id, (s) => {
      if (s.state !== 'queued') throw new Error(`session ${id} is ${s.state}, not queued`);
      return { ...s, state: 'offered', tellerId, offerId: randomUUID() };
    });
    return id;
  });
}

export function session(fields: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: randomUUID(),
    businessType: 'consultation',
    language: 'en',
    priority: 0,
    customerRef: 'CUST-0001',
    state: 'created',
    createdAt: 1_700_000_000_000,
    tokenHash: randomUUID(),
    tokenExpiresAt: 1_700_000_900_000,
    tokenUsed: false,
    declinedBy: {},
    createdBy: 'test-bank',
    ...fields,
  };
}

/** A session with every optional and nested field set, for round-trip checks. */
export function fullSession(): SessionRecord {
  const descriptor = Array.from({ length: 128 }, (_, i) => Math.fround(Math.sin(i * 12.9898) * 0.37));
  descriptor[0] = Math.fround(1e-38);
  descriptor[1] = -0.123456789012345;
  descriptor[2] = 1;
  return session({
    state: 'decided',
    priority: 7,
    queuedAt: 1_700_000_000_500,
    tokenUsed: true,
    resumeTokenHash: randomUUID(),
    offerId: randomUUID(),
    tellerId: 'alice',
    callId: randomUUID(),
    declinedBy: { bob: 1_700_000_000_600, 'carl.x': 1_700_000_000_700 },
    answeredAt: 1_700_000_001_000,
    endedAt: 1_700_000_002_000,
    endReason: 'teller_hangup',
    customerRef: 'Zoë «Ünïcode» 名前 \u2028 "quoted" \\ back',
    amount: { value: '1250000.00', currency: 'EUR' },
    decision: {
      decision: 'approved',
      reason: 'identity_verified',
      tellerId: 'alice',
      tellerScope: 'full_service',
      decidedAt: 1_700_000_001_500,
      note: 'checked twice',
      entryIndex: 40,
      dualControl: true,
      status: 'issued',
      evidence: {
        faceMatch: { score: 0.8123456789, decision: 'match', threshold: 0.6, model: 'face-api 1.7.15' },
        liveness: { outcome: 'passed', challenges: 3 },
        document: { captured: true, type: 'passport', imageSha256: 'b'.repeat(64) },
      },
      cosign: { supervisorId: 'sam', verdict: 'cosign', at: 1_700_000_001_700, entryIndex: 41 },
      recordId: randomUUID(),
      record: {
        format: 'videoteller-record',
        version: 1,
        jws: 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln',
        entry: '{"a":1,"b":[true,null,"x"]}',
        index: 41,
        inclusionProof: ['AAAA', 'BBBB', 'CCCC'],
        checkpoint: 'videoteller.local/ledger\n42\nabc=\n\n— key sig\n',
      },
    },
    reference: { sha256: 'a'.repeat(64), descriptor, detectionScore: 0.987654321, attachedAt: 1_700_000_000_100 },
  });
}

export function teller(id: string): TellerRecord {
  return {
    id,
    displayName: id.toUpperCase(),
    skills: { businessTypes: ['consultation', 'corporate_account_opening'], languages: ['en', 'de'] },
    state: 'away',
    idleSince: 1_700_000_000_000,
    missedOffers: 0,
  };
}

function tick(n: number): Promise<void> {
  return new Promise((r) => setTimeout(r, n));
}
