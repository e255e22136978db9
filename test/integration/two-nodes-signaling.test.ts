/**
 * Two server nodes in one process on different ports, sharing one Redis (state store and
 * socket.io adapter): a customer on node A and a teller on node B are routed and notified across
 * the nodes (offer, call start). Media across nodes (a call's transports on the node that owns its
 * router) is not built yet; see the README, "Several nodes".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { next, outcome, request, SocketClients } from '../helpers/socket.ts';
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from './store/redis-helpers.ts';

const prefix = testPrefix();
const shared = { REDIS_URL: SHARED_REDIS_URL, REDIS_KEY_PREFIX: prefix, JWT_SECRET: 'two-nodes-test-secret-0123456789abcdefghijklmnop' };
let a: TestServer;
let b: TestServer;
const onA = new SocketClients(() => a.url);
const onB = new SocketClients(() => b.url);

beforeAll(async () => {
  a = await startTestServer(shared);
  b = await startTestServer(shared);
});
afterAll(async () => {
  onA.closeAll();
  onB.closeAll();
  await a?.close();
  await b?.close();
  await deletePrefix(prefix);
});

describe('two nodes sharing Redis', () => {
  it('offers a customer waiting on node A to a teller signed in on node B, and tells both when the call starts', async () => {
    const teller = onB.open('/teller', await loginStaff(b.url, 'alice', 'alice-demo-pass'));
    expect(await outcome(teller)).toEqual({ connected: true });
    expect(await request(teller, 'teller:availability', { status: 'available' })).toMatchObject({ ok: true });

    const { customerToken, sessionId } = await createSession(a, { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-2N' });
    const customer = onA.open('/customer', customerToken);
    expect(await outcome(customer)).toEqual({ connected: true });
    const offered = next(teller, 'offer:new');
    expect(await request(customer, 'queue:join', { consent: true })).toMatchObject({ ok: true });
    const offer = (await offered) as { offerId: string; sessionId: string };
    expect(offer.sessionId).toBe(sessionId);

    const customerStart = next(customer, 'call:start');
    const tellerStart = next(teller, 'call:start');
    expect(await request(teller, 'offer:accept', { offerId: offer.offerId })).toMatchObject({ ok: true, data: { sessionId } });
    expect(await customerStart).toMatchObject({ sessionId, role: 'customer' });
    expect(await tellerStart).toMatchObject({ sessionId, role: 'teller' });
    // Both nodes read the same session.
    const seen = await Promise.all([a, b].map(async (n) => (await n.app.store.getSession(sessionId))?.state));
    expect(seen).toEqual(['in_call', 'in_call']);
  });
});
