import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { QueueRouter } from '../../../signaling/router.ts';
import { loadConfig } from '../../../src/config.ts';
import { openStore } from '../../../src/store/index.ts';
import { MemoryStore } from '../../../src/store/memory.ts';
import { RedisStore } from '../../../src/store/redis.ts';
import { LockTimeoutError, StoreDataError, StoreUnavailableError, type StateStore } from '../../../src/store/types.ts';
import { openTestEvidence, type TestEvidence } from '../../helpers/evidence.ts';
import { claimNext, describeStoreConformance, session, teller } from '../../unit/store/conformance.ts';
import { deletePrefix, openTestStore, SHARED_REDIS_URL, silentLog, testPrefix } from './redis-helpers.ts';

const prefixes: string[] = [];
function prefix(): string {
  const p = testPrefix();
  prefixes.push(p);
  return p;
}
afterAll(async () => {
  for (const p of prefixes) await deletePrefix(p);
});

describeStoreConformance('redis', () => openTestStore(prefix()));

/** Two store instances on one prefix: two nodes, two connections. */
const nodes: StateStore[] = [];
async function twoNodes(lock?: { ttlMs?: number; waitMs?: number }): Promise<[RedisStore, RedisStore, string]> {
  const p = prefix();
  const a = await openTestStore(p, lock ? { lock } : {});
  const b = await openTestStore(p, lock ? { lock } : {});
  nodes.push(a, b);
  return [a, b, p];
}
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

function raw(): Redis {
  return new Redis(SHARED_REDIS_URL, { maxRetriesPerRequest: 1 });
}

describe('RedisStore across nodes', () => {
  it('sees one node write what the other reads, with the same values', async () => {
    const [a, b] = await twoNodes();
    const s = session();
    await a.createSession(s);
    expect(await b.getSession(s.id)).toStrictEqual(s);
    await b.updateSession(s.id, (x) => ({ ...x, state: 'queued', queuedAt: 5 }));
    await b.enqueue(s.id);
    expect(await a.queuedSessionIds()).toEqual([s.id]);
    expect((await a.findSessionByTokenHash(s.tokenHash))?.state).toBe('queued');
  });

  it('loses no update when two nodes increment one record 2 × 50 times at once', async () => {
    const [a, b] = await twoNodes();
    await a.putTeller(teller('eve'));
    const bump = (store: StateStore) => store.updateTeller('eve', (t) => ({ ...t, missedOffers: t.missedOffers + 1 }));
    await Promise.all(Array.from({ length: 100 }, (_, i) => bump(i % 2 ? a : b)));
    expect((await a.getTeller('eve'))!.missedOffers).toBe(100);
  });

  it('lets exactly one of two nodes claim a queued session for its teller (withLock + dequeue + update), 20 times over', async () => {
    const [a, b] = await twoNodes();
    for (let round = 0; round < 20; round++) {
      const s = session({ state: 'queued', queuedAt: round });
      await a.createSession(s);
      await a.enqueue(s.id);
      const only = (ids: string[]) => ids.find((id) => id === s.id);
      const [byA, byB] = await Promise.all([claimNext(a, `teller-a-${round}`, only), claimNext(b, `teller-b-${round}`, only)]);
      expect([byA, byB].filter((x) => x === s.id)).toHaveLength(1);
      const winner = byA === s.id ? `teller-a-${round}` : `teller-b-${round}`;
      const stored = (await b.getSession(s.id))!;
      expect(stored).toMatchObject({ state: 'offered', tellerId: winner });
      expect(await a.queuedSessionIds()).not.toContain(s.id);
    }
  });

  it('serves 50 queued sessions to 200 concurrent claims by 20 tellers on two nodes: none twice, none lost', async () => {
    const [a, b] = await twoNodes();
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const s = session({ state: 'queued', queuedAt: i });
      ids.push(s.id);
      await (i % 2 ? a : b).createSession(s);
      await (i % 2 ? b : a).enqueue(s.id);
    }
    // Each claim takes a random waiting session, as a node with stale ordering could.
    const random = (q: string[]) => q[Math.floor(Math.random() * q.length)];
    const claims = await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const tellerId = `teller-${i % 20}`;
        return claimNext(i % 2 ? a : b, tellerId, random).then((sessionId) => ({ tellerId, sessionId }));
      }),
    );
    const won = claims.filter((c): c is { tellerId: string; sessionId: string } => c.sessionId !== undefined);
    expect(won).toHaveLength(50);
    expect(new Set(won.map((c) => c.sessionId)).size).toBe(50);
    expect(new Set(won.map((c) => c.sessionId))).toEqual(new Set(ids));
    expect(await a.queuedSessionIds()).toEqual([]);
    for (const c of won) expect((await b.getSession(c.sessionId))!).toMatchObject({ state: 'offered', tellerId: c.tellerId });
  });

  it('never lets holders on two nodes overlap, and a throwing holder releases the lock for the other node', async () => {
    const [a, b] = await twoNodes();
    let inside = 0;
    let maxInside = 0;
    let runs = 0;
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (i % 2 ? a : b).withLock('routing', async () => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          await new Promise((r) => setTimeout(r, 1 + (i % 4)));
          runs++;
          inside--;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    expect(runs).toBe(30);
    await expect(a.withLock('routing', async () => Promise.reject(new Error('node a failed')))).rejects.toThrow('node a failed');
    expect(await b.withLock('routing', async () => 'b got it')).toBe('b got it');
  });

  it('renews the lock while a holder outlives its ttl, so the other node waits for the release', async () => {
    const [a, b] = await twoNodes({ ttlMs: 300, waitMs: 10_000 });
    const events: string[] = [];
    let aInside!: () => void;
    const started = new Promise<void>((r) => (aInside = r));
    const long = a.withLock('routing', async () => {
      events.push('a start');
      aInside();
      // Several ttls long: only renewal keeps the lock.
      await new Promise((r) => setTimeout(r, 1200));
      events.push('a end');
    });
    await started;
    await b.withLock('routing', async () => {
      events.push('b');
    });
    await long;
    expect(events).toEqual(['a start', 'a end', 'b']);
  });

  it('gives up with LockTimeoutError after its bounded wait, without running the holder', async () => {
    const [a, b] = await twoNodes({ ttlMs: 5000, waitMs: 200 });
    let release!: () => void;
    let held!: () => void;
    const isHeld = new Promise<void>((r) => (held = r));
    const holder = a.withLock('routing', () => {
      held();
      return new Promise<void>((r) => (release = r));
    });
    await isHeld;
    let ran = false;
    const err = await b
      .withLock('routing', async () => {
        ran = true;
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockTimeoutError);
    expect(err).toMatchObject({ lock: 'routing' });
    expect(ran).toBe(false);
    // Waiters queued on the same node give up too, and the holder is unaffected.
    const local = await a.withLock('routing', async () => 'x').catch((e: unknown) => e);
    expect(local).toBeInstanceOf(LockTimeoutError);
    release();
    await holder;
    expect(await b.withLock('routing', async () => 'free again')).toBe('free again');
  });

  it('takes over a lock whose holder died (key left behind) once its ttl runs out', async () => {
    const [a, , p] = await twoNodes({ ttlMs: 5000, waitMs: 10_000 });
    const r = raw();
    try {
      // A node took the lock and died: nobody renews or releases it.
      await r.set(`${p}lock:routing`, 'dead-node-token', 'PX', 400);
      expect(await a.withLock('routing', async () => 'taken over')).toBe('taken over');
      expect(await r.get(`${p}lock:routing`)).toBeNull();
    } finally {
      r.disconnect();
    }
  });

  it('releases only its own lock: a lock that expired and was taken by another node survives the late release', async () => {
    const [a, , p] = await twoNodes({ ttlMs: 5000, waitMs: 1000 });
    const r = raw();
    try {
      await a.withLock('routing', async () => {
        // Simulate the expiry and another node taking the lock while this holder still runs.
        await r.set(`${p}lock:routing`, 'other-node-token', 'PX', 5000);
      });
      expect(await r.get(`${p}lock:routing`)).toBe('other-node-token');
    } finally {
      r.disconnect();
    }
  });

  it('refuses malformed stored data with StoreDataError instead of handing it out', async () => {
    const [a, , p] = await twoNodes();
    const r = raw();
    try {
      const s = session();
      await a.createSession(s);
      await r.hset(`${p}sessions`, s.id, JSON.stringify({ ...s, state: 'teleported' }));
      await expect(a.getSession(s.id)).rejects.toBeInstanceOf(StoreDataError);
      await r.hset(`${p}sessions`, s.id, '{not json');
      await expect(a.getSession(s.id)).rejects.toThrow(/not JSON/);
      await r.hset(`${p}tellers`, 'zed', JSON.stringify({ ...teller('zed'), missedOffers: 'many' }));
      await expect(a.listTellers()).rejects.toBeInstanceOf(StoreDataError);
    } finally {
      r.disconnect();
    }
  });

  it('runs the real router on two nodes at once: every session offered once, no teller reserved twice', async () => {
    const [a, b] = await twoNodes();
    const evidence: TestEvidence[] = [await openTestEvidence(), await openTestEvidence()];
    const routers = [a, b].map(
      (store, i) =>
        new QueueRouter(
          store,
          evidence[i]!.sink,
          { mode: 'longest_idle', offerTimeoutMs: 60_000, maxMissedOffers: 3, wrapUpMs: 0, priorityAgeingS: 60, declineCooldownMs: 60_000 },
          silentLog,
        ),
    );
    const offers: { sessionId: string; tellerId: string; node: number }[] = [];
    routers.forEach((r, node) => r.on('offer', (o) => offers.push({ sessionId: o.sessionId, tellerId: o.tellerId, node })));
    try {
      // 12 tellers: half sign in on each node.
      for (let i = 0; i < 12; i++) {
        const router = routers[i % 2]!;
        const id = `t${i}`;
        await router.tellerOnline({ id, displayName: id, role: 'teller', skills: { businessTypes: ['consultation'], languages: ['en'] } });
      }
      // 20 customers join, alternating nodes, while the tellers become available on both nodes.
      const sessions = Array.from({ length: 20 }, () => session({ tokenUsed: true }));
      for (const s of sessions) await a.createSession(s);
      await Promise.all([
        ...sessions.map((s, i) => routers[i % 2]!.enqueue(s.id)),
        ...Array.from({ length: 12 }, (_, i) => routers[(i + 1) % 2]!.setAvailability(`t${i}`, 'available')),
      ]);
      await Promise.all(routers.map((r) => r.route()));

      expect(offers).toHaveLength(12);
      expect(new Set(offers.map((o) => o.sessionId)).size).toBe(12);
      expect(new Set(offers.map((o) => o.tellerId)).size).toBe(12);
      expect(new Set(offers.map((o) => o.node))).toEqual(new Set([0, 1]));
      for (const o of offers) {
        expect(await b.getSession(o.sessionId)).toMatchObject({ state: 'offered', tellerId: o.tellerId });
        expect(await a.getTeller(o.tellerId)).toMatchObject({ state: 'reserved', sessionId: o.sessionId });
      }
      const states = await Promise.all(sessions.map(async (s) => (await a.getSession(s.id))!.state));
      expect(states.filter((s) => s === 'queued')).toHaveLength(8);
      // Every session, offered or waiting, is in the queue exactly once.
      expect([...(await a.queuedSessionIds())].sort()).toEqual(sessions.map((s) => s.id).sort());
    } finally {
      for (const r of routers) r.close();
      for (const e of evidence) await e.close();
    }
  });
});

/** loadConfig requires OTP_SECRET with REDIS_URL (the nodes share one-time codes). */
const OTP_SECRET_FOR_CONFIG = 'otp-secret-for-config-0123456789abcdef';

describe('openStore', () => {
  it('opens memory without REDIS_URL and Redis with it', async () => {
    const memory = await openStore(loadConfig({}), silentLog);
    expect(memory).toBeInstanceOf(MemoryStore);
    await memory.close();
    const p = prefix();
    const redis = await openStore(loadConfig({ REDIS_URL: SHARED_REDIS_URL, REDIS_KEY_PREFIX: p, OTP_SECRET: OTP_SECRET_FOR_CONFIG }), silentLog);
    nodes.push(redis);
    expect(redis.kind).toBe('redis');
    await redis.createSession(session());
    const r = raw();
    try {
      expect(await r.hlen(`${p}sessions`)).toBe(1);
    } finally {
      r.disconnect();
    }
  });

  it('fails at once with StoreUnavailableError when nothing listens at REDIS_URL', async () => {
    const port = await freePort();
    const err = await openStore(loadConfig({ REDIS_URL: `redis://:s3cret-pass@127.0.0.1:${port}`, OTP_SECRET: OTP_SECRET_FOR_CONFIG }), silentLog).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toContain(`cannot connect to Redis at 127.0.0.1:${port}`);
    expect((err as Error).message).toContain('ECONNREFUSED');
    // The password never appears in the error.
    expect((err as Error).message).not.toContain('s3cret');
  });

  it('refuses a REDIS_URL that is not a redis:// URL, or a bad key prefix, as configuration errors', () => {
    expect(() => loadConfig({ REDIS_URL: 'http://127.0.0.1:6379' })).toThrow(/REDIS_URL: must be a redis/);
    expect(() => loadConfig({ REDIS_URL: 'not a url' })).toThrow(/REDIS_URL/);
    expect(() => loadConfig({ REDIS_KEY_PREFIX: 'has space' })).toThrow(/REDIS_KEY_PREFIX/);
  });
});

/** A loopback port nothing listens on (bound then released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

