/**
 * Two server nodes in one process on different ports, sharing one Redis (state store, socket.io
 * adapter, cluster requests): a customer on node A and a teller on node B are routed and notified
 * across the nodes; the call's media live on B (the teller's node) and the customer's media
 * messages, sent to A, are answered by B, typed refusals included; a customer who drops from A and
 * comes back on B within the grace period keeps their place. test/e2e/two-nodes.test.ts runs real
 * video across two node processes and kills one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { next, outcome, request, SocketClients } from '../helpers/socket.ts';
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from './store/redis-helpers.ts';

const prefix = testPrefix();
const shared = {
  REDIS_URL: SHARED_REDIS_URL,
  REDIS_KEY_PREFIX: prefix,
  JWT_SECRET: 'two-nodes-test-secret-0123456789abcdefghijklmnop',
  OTP_SECRET: 'two-nodes-test-otp-secret-0123456789abcdefghijk',
  CLUSTER_HEARTBEAT_MS: '200',
};
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
    // Both nodes read the same session; B holds the call's media.
    const seen = await Promise.all([a, b].map(async (n) => (await n.app.store.getSession(sessionId))?.state));
    expect(seen).toEqual(['in_call', 'in_call']);
    expect((await a.app.store.getSession(sessionId))?.mediaNode).toBe(b.app.signaling.calls.nodeId);
    expect([a.app.signaling.calls.size, b.app.signaling.calls.size]).toEqual([0, 1]);

    // The customer's media messages go to A and are answered by B.
    const caps = await request<{ rtpCapabilities: { codecs: unknown[] } }>(customer, 'media:capabilities', {});
    expect(caps.ok && caps.data.rtpCapabilities.codecs.length).toBeGreaterThan(0);
    const transport = await request<{ id: string; iceCandidates: Array<{ port: number }> }>(customer, 'media:createTransport', { direction: 'send' });
    expect(transport.ok).toBe(true);
    const transports = await b.app.media.stats();
    expect(transports.reduce((n, w) => n + w.transports, 0)).toBe(1);
    expect((await a.app.media.stats()).reduce((n, w) => n + w.transports, 0)).toBe(0);
    // A refusal on B reaches the customer on A with its code.
    const foreign = await request(customer, 'media:resumeConsumer', { consumerId: '00000000-0000-4000-8000-000000000000' });
    expect(foreign).toMatchObject({ ok: false, error: { code: 'not_found' } });
    // A malformed message is refused on A, before it travels.
    expect(await request(customer, 'media:createTransport', { direction: 'sideways' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });

    // The customer hangs up on A: the call on B ends, and both sides hear it.
    const tellerEnded = next(teller, 'call:ended');
    expect(await request(customer, 'call:hangup', {})).toMatchObject({ ok: true, data: { state: 'ended' } });
    expect(await tellerEnded).toMatchObject({ sessionId, reason: 'customer_hangup' });
    expect(b.app.signaling.calls.size).toBe(0);
    expect(await request(customer, 'media:capabilities', {})).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
  });

  it('keeps the place of a customer who drops from node A and comes back on node B within the grace period', async () => {
    const { customerToken, sessionId } = await createSession(a, { businessType: 'wealth_product', language: 'fr', priority: 0, customerRef: 'CUST-2N-G' });
    const first = onA.open('/customer', customerToken);
    const info = next(first, 'session:info');
    expect(await outcome(first)).toEqual({ connected: true });
    const { resumeToken } = (await info) as { resumeToken?: string };
    expect(resumeToken).toBeTruthy();
    expect(await request(first, 'queue:join', { consent: true })).toMatchObject({ ok: true });
    first.disconnect();
    const back = onB.open('/customer', resumeToken);
    expect(await outcome(back)).toEqual({ connected: true });
    // Past node A's grace period (2 s in tests): A's timer fired and found the customer back on B.
    // (No teller speaks French about wealth products here, so the session just waits.)
    await new Promise((r) => setTimeout(r, 3000));
    expect((await b.app.store.getSession(sessionId))?.state).toBe('queued');
    expect(await request(back, 'queue:leave', {})).toMatchObject({ ok: true, data: { state: 'abandoned' } });
  });
});
