import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../../../src/store/redis.ts';
import { StoreUnavailableError } from '../../../src/store/types.ts';
import { createSession, loginStaff, startTestServer, type TestServer } from '../../helpers/server.ts';
import { next, outcome, request, SocketClients, type Client } from '../../helpers/socket.ts';
import { session } from '../../unit/store/conformance.ts';
import { silentLog } from './redis-helpers.ts';
import { startRedisProcess, type RedisProcess } from './redis-process.ts';

/**
 * Redis restarts while customers wait. The test runs its own redis-server (AOF, fsync always, as
 * src/store/README.md requires) and restarts it: no waiting customer may be lost or duplicated,
 * and the nodes must carry on by themselves once Redis is back.
 */

let redis: RedisProcess;
beforeAll(async () => {
  redis = await startRedisProcess();
});
afterAll(async () => {
  await redis?.dispose();
});

const stores: RedisStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});
async function open(prefix: string, opTimeoutMs?: number): Promise<RedisStore> {
  const store = await RedisStore.open({ url: redis.url, keyPrefix: prefix, log: silentLog, ...(opTimeoutMs ? { opTimeoutMs } : {}) });
  stores.push(store);
  return store;
}

describe('RedisStore across a Redis restart', () => {
  it('keeps every queued session exactly once, waits for the reconnect within its bound, and fails typed past it', async () => {
    const store = await open('restart-a:', 10_000);
    const impatient = await open('restart-a:', 300);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      const s = session({ state: 'queued', queuedAt: 1000 + i, tokenUsed: true });
      await store.createSession(s);
      await store.enqueue(s.id);
      ids.push(s.id);
    }

    await redis.stop();
    // While Redis is down: a short-bounded operation fails with the typed error…
    const failed = await impatient.queuedSessionIds().catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(StoreUnavailableError);
    expect((failed as StoreUnavailableError).message).toMatch(/Redis unavailable/);
    await expect(impatient.withLock('routing', async () => 'ran')).rejects.toBeInstanceOf(StoreUnavailableError);
    // …and the patient ones wait for the reconnect: a claim under the lock and a read, both issued now.
    const claim = store.withLock('routing', async () => {
      const removed = await store.dequeue(ids[0]!);
      await store.updateSession(ids[0]!, (s) => ({ ...s, state: 'offered', tellerId: 't-during-outage' }));
      return removed;
    });
    const waitingRead = store.queuedSessionIds();
    await new Promise((r) => setTimeout(r, 500));
    await redis.start();

    expect(await claim).toBe(true);
    const afterRestart = await waitingRead;
    // The read was sent after the reconnect, so it may or may not see the claim; it sees no other change.
    expect(new Set(afterRestart).size).toBe(afterRestart.length);
    expect(ids.slice(1).every((id) => afterRestart.includes(id))).toBe(true);

    const queued = await store.queuedSessionIds();
    expect([...queued].sort()).toEqual(ids.slice(1).sort());
    for (const id of ids.slice(1)) expect((await store.getSession(id))!.state).toBe('queued');
    expect(await store.getSession(ids[0]!)).toMatchObject({ state: 'offered', tellerId: 't-during-outage' });
    // The impatient node reconnected by itself too.
    expect([...(await impatient.queuedSessionIds())].sort()).toEqual(ids.slice(1).sort());
  });

  it('keeps the lock usable after a restart that lost nothing (no stale lock left behind)', async () => {
    const store = await open('restart-b:', 10_000);
    expect(await store.withLock('routing', async () => 1)).toBe(1);
    await redis.restart();
    expect(await store.withLock('routing', async () => 2)).toBe(2);
  });
});

describe('the real server on Redis, restarted while customers wait', () => {
  let server: TestServer;
  const clients = new SocketClients(() => server.url);
  beforeAll(async () => {
    server = await startTestServer({ REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'restart-server:', OFFER_TIMEOUT_MS: '30000', RECONNECT_GRACE_MS: '30000' });
  });
  afterAll(async () => {
    clients.closeAll();
    await server?.close();
  });

  it('loses and duplicates no waiting customer, keeps positions consistent, and routes to a teller afterwards', async () => {
    let n = 6;
    const customers: { socket: Client; sessionId: string }[] = [];
    for (let i = 0; i < n; i++) {
      const { customerToken, sessionId } = await createSession(server, {
        businessType: 'consultation',
        language: 'en',
        priority: 0,
        customerRef: `CUST-${1000 + i}`,
      });
      const socket = clients.open('/customer', customerToken);
      expect(await outcome(socket)).toEqual({ connected: true });
      expect(await request(socket, 'queue:join', { consent: true })).toMatchObject({ ok: true, data: { position: i + 1 } });
      customers.push({ socket, sessionId });
    }
    // One more customer is on the page, about to join when Redis goes away.
    const late = await createSession(server, { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-LATE' });
    const lateSocket = clients.open('/customer', late.customerToken);
    expect(await outcome(lateSocket)).toEqual({ connected: true });
    const before = await server.app.router.queuePositions();

    await redis.stop();
    // Joining during the outage waits for Redis (within the store's bound) instead of failing or hanging.
    const lateJoin = request(lateSocket, 'queue:join', { consent: true });
    await new Promise((r) => setTimeout(r, 500));
    await redis.start();
    expect(await lateJoin).toMatchObject({ ok: true, data: { position: n + 1 } });
    customers.push({ socket: lateSocket, sessionId: late.sessionId });
    n++;
    const ids = customers.map((c) => c.sessionId);

    // The customers' connections are to the server, not to Redis: they are all still there.
    expect(customers.every((c) => c.socket.connected)).toBe(true);
    const queued = await server.app.store.queuedSessionIds();
    expect(queued).toHaveLength(n);
    expect([...queued].sort()).toEqual([...ids].sort());
    for (const id of ids) expect((await server.app.store.getSession(id))!.state).toBe('queued');
    const after = await server.app.router.queuePositions();
    // Everyone who waited before the outage keeps their position and estimate; the late joiner is last.
    for (const [id, position] of before) expect(after.get(id)).toEqual(position);
    expect(ids.map((id) => after.get(id)!.position)).toEqual(Array.from({ length: n }, (_, i) => i + 1));

    // A teller signs in after the restart: the router offers the longest-waiting customer.
    const teller = clients.open('/teller', await loginStaff(server.url, 'alice', 'alice-demo-pass'));
    expect(await outcome(teller)).toEqual({ connected: true });
    const offered = next(teller, 'offer:new');
    expect(await request(teller, 'teller:availability', { status: 'available' })).toEqual({ ok: true, data: { state: 'available' } });
    const offer = await offered;
    expect(offer.sessionId).toBe(ids[0]);
    expect((await server.app.store.getSession(ids[0]!))!.state).toBe('offered');
    // The others still wait, each once.
    const stillQueued = await server.app.store.queuedSessionIds();
    expect([...stillQueued].sort()).toEqual([...ids].sort());

    // Declining puts the first customer back in the queue at its place; nobody is lost.
    expect(await request(teller, 'offer:decline', { offerId: offer.offerId })).toMatchObject({ ok: true });
    const positions = await server.app.router.queuePositions();
    expect([...positions.keys()].sort()).toEqual([...ids].sort());
    expect(new Set([...positions.values()].map((p) => p.position)).size).toBe(n);
  });

  it('fails to start with a clear error when REDIS_URL points where nothing listens', async () => {
    await redis.stop();
    try {
      await expect(startTestServer({ REDIS_URL: redis.url })).rejects.toThrow(`cannot connect to Redis at 127.0.0.1:${redis.port}`);
    } finally {
      await redis.start();
    }
  });
});
