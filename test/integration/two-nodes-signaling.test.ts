/**
 * Two server nodes in one process on different ports, sharing one Redis (state store, socket.io
 * adapter, cluster requests): a customer on node A and a teller on node B are routed and notified
 * across the nodes; the call's media live on B (the teller's node) and the customer's media
 * messages, sent to A, are answered by B, typed refusals included; a customer who drops from A and
 * comes back on B within the grace period keeps their place. test/e2e/two-nodes.test.ts runs real
 * video across two node processes and kills one.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { next, outcome, request, SocketClients } from '../helpers/socket.ts';
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from './store/redis-helpers.ts';
import { SECRET, startReceiver, type Receiver } from '../helpers/webhook-receiver.ts';

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
let bank: Receiver;
const onA = new SocketClients(() => a.url);
const onB = new SocketClients(() => b.url);

beforeAll(async () => {
  bank = await startReceiver();
  a = await startTestServer({ ...shared, WEBHOOKS: `test-bank=${bank.url}|${SECRET}` });
  b = await startTestServer({ ...shared, WEBHOOKS: `test-bank=${bank.url}|${SECRET}` });
});
afterEach(() => {
  onA.closeAll();
  onB.closeAll();
});
afterAll(async () => {
  onA.closeAll();
  onB.closeAll();
  await a?.close();
  await b?.close();
  await bank?.close();
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
    // Each node announces itself and its media address; either node's /metrics lists both.
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    for (const node of [a, b]) expect(metrics).toContain(`videoteller_cluster_nodes{node="${node.app.signaling.calls.nodeId}",media_address="127.0.0.1"} 1`);
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

    // The supervisor board on node A shows the call node B's router answered: the board's figures
    // are the deployment's (shared counters), while A's own /metrics counters stay A's.
    const supervisor = onA.open('/supervisor', await loginStaff(a.url, 'sam', 'sam-demo-pass'));
    const board = next(supervisor, 'board:update');
    expect(await outcome(supervisor)).toEqual({ connected: true });
    expect(((await board) as { callStats: { answered: number } | null }).callStats).toMatchObject({ answered: 1, connectionRate: 0 });
    expect((await a.app.operations.callStats.snapshot()).answered).toBe(0);
    expect((await b.app.operations.callStats.snapshot()).answered).toBe(1);
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

  it('resumes the call of a teller whose console moves from node B to node A; the code and the decision sent to A run where the call is', async () => {
    const token = await loginStaff(b.url, 'alice', 'alice-demo-pass');
    const onNodeB = onB.open('/teller', token);
    expect(await outcome(onNodeB)).toEqual({ connected: true });
    expect(await request(onNodeB, 'teller:availability', { status: 'available' })).toMatchObject({ ok: true });
    const { customerToken, sessionId } = await createSession(a, { businessType: 'corporate_account_opening', language: 'en', priority: 0, customerRef: 'CUST-2N-M' });
    const customer = onA.open('/customer', customerToken);
    expect(await outcome(customer)).toEqual({ connected: true });
    const offered = next(onNodeB, 'offer:new');
    expect(await request(customer, 'queue:join', { consent: true })).toMatchObject({ ok: true });
    const offer = (await offered) as { offerId: string };
    expect(await request(onNodeB, 'offer:accept', { offerId: offer.offerId })).toMatchObject({ ok: true });
    await expect.poll(() => b.app.signaling.calls.size).toBe(1);

    // The console drops from B and comes back on A: the call (on B) resumes and tells the console.
    onNodeB.disconnect();
    await expect.poll(async () => (await a.app.store.getSession(sessionId))?.state).toBe('reconnecting');
    const onNodeA = onA.open('/teller', token);
    const resumed = next(onNodeA, 'call:start');
    expect(await outcome(onNodeA)).toEqual({ connected: true });
    expect(await resumed).toMatchObject({ sessionId, role: 'teller' });
    expect((await a.app.store.getSession(sessionId))?.state).toBe('in_call');
    // B's grace period ran out meanwhile and found the console connected (on A): the call goes on.
    await new Promise((r) => setTimeout(r, 2500));
    expect((await a.app.store.getSession(sessionId))?.state).toBe('in_call');
    expect(b.app.signaling.calls.size).toBe(1);

    // The one-time code: sent from A, delivered by A's webhook, typed by the customer on A, shared through Redis.
    const requested = next(customer, 'otp:requested');
    expect(await request(onNodeA, 'otp:send', {})).toMatchObject({ ok: true });
    await requested;
    await expect.poll(() => bank.requests.some((r) => r.body.type === 'otp.requested' && r.body.data.sessionId === sessionId)).toBe(true);
    const code = String(bank.requests.find((r) => r.body.type === 'otp.requested' && r.body.data.sessionId === sessionId)!.body.data.code);
    const status = next(onNodeA, 'otp:status');
    expect(await request(customer, 'otp:submit', { code })).toMatchObject({ ok: true, data: { result: 'verified' } });
    expect(await status).toMatchObject({ result: 'verified' });

    // The decision, sent to A, runs on B (it reads the call's checks and ends the call there).
    const ended = next(customer, 'call:ended');
    const decided = await request<{ decision: string }>(onNodeA, 'call:decide', { decision: 'approved', reason: 'identity_verified' });
    expect(decided).toMatchObject({ ok: true, data: { decision: 'approved' } });
    expect(await ended).toMatchObject({ sessionId, reason: 'decided' });
    expect(b.app.signaling.calls.size).toBe(0);
    const session = await a.app.store.getSession(sessionId);
    expect(session?.decision).toMatchObject({ tellerId: 't-alice', evidence: { oneTimeCode: { result: 'verified' } } });
  });
});
