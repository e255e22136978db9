import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { next, outcome, request, SocketClients, type Client } from '../helpers/socket.ts';

let server: TestServer;
const clients = new SocketClients(() => server.url);
const open = (ns: '/customer' | '/teller', token: unknown) => clients.open(ns, token);

beforeAll(async () => {
  server = await startTestServer({ OFFER_TIMEOUT_MS: '5000' });
});
afterEach(() => clients.closeAll());
afterAll(async () => {
  await server?.close();
});

async function customer(body?: Record<string, unknown>): Promise<{ socket: Client; sessionId: string; token: string }> {
  const { customerToken, sessionId } = await createSession(server, body);
  const socket = open('/customer', customerToken);
  expect(await outcome(socket)).toEqual({ connected: true });
  return { socket, sessionId, token: customerToken };
}

describe('a call over signaling', () => {
  it('routes, accepts, lets each side reach only its own call, and hangs up', async () => {
    const tellerToken = await loginStaff(server.url, 'alice', 'alice-demo-pass');
    const teller = open('/teller', tellerToken);
    const firstInfo = next(teller, 'teller:info');
    expect(await outcome(teller)).toEqual({ connected: true });
    expect((await firstInfo).state).toBe('away');
    expect(await request(teller, 'teller:availability', { status: 'available' })).toEqual({ ok: true, data: { state: 'available' } });

    // Two customers: the first call is accepted, the second is offered after the first ends.
    const a = await customer();
    const offerA = next(teller, 'offer:new');
    const positionA = await request<{ position: number }>(a.socket, 'queue:join', { consent: true });
    expect(positionA).toMatchObject({ ok: true });
    const offer = await offerA;
    expect(offer).toMatchObject({ sessionId: a.sessionId, businessType: 'corporate_account_opening', language: 'en' });
    expect(offer.expiresAt).toBeGreaterThan(Date.now());

    const startTeller = next(teller, 'call:start');
    const startCustomer = next(a.socket, 'call:start');
    expect(await request(teller, 'offer:accept', { offerId: 'not-this-one' })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    const accepted = await request<{ callId: string }>(teller, 'offer:accept', { offerId: offer.offerId });
    expect(accepted).toMatchObject({ ok: true, data: { sessionId: a.sessionId } });
    const [ts, cs] = await Promise.all([startTeller, startCustomer]);
    expect(ts.callId).toBe(cs.callId);

    // Media for this call: capabilities and a send transport on loopback.
    const caps = await request<{ rtpCapabilities: { codecs: { mimeType: string }[] } }>(a.socket, 'media:capabilities', {});
    expect(caps.ok && caps.data.rtpCapabilities.codecs.map((c) => c.mimeType)).toEqual(expect.arrayContaining(['audio/opus', 'video/VP8']));
    const send = await request<{ id: string; iceCandidates: { address?: string; ip?: string }[] }>(a.socket, 'media:createTransport', { direction: 'send' });
    expect(send.ok).toBe(true);
    if (!send.ok) return;
    expect(send.data.iceCandidates.map((c) => c.address ?? c.ip)).toContain('127.0.0.1');
    // A transport id that is not this participant's is refused.
    const tellerSend = await request<{ id: string }>(teller, 'media:createTransport', { direction: 'send' });
    expect(tellerSend.ok).toBe(true);
    const rtpParameters = {
      mid: '0',
      codecs: [{ mimeType: 'video/VP8', payloadType: 96, clockRate: 90000, rtcpFeedback: [] }],
      headerExtensions: [],
      encodings: [{ ssrc: 11111111 }],
      rtcp: { cname: 'test' },
    };
    if (tellerSend.ok) {
      expect(await request(a.socket, 'media:produce', { transportId: tellerSend.data.id, kind: 'video', rtpParameters })).toMatchObject({
        ok: false,
      });
    }
    const produced = await request<{ producerId: string }>(a.socket, 'media:produce', { transportId: send.data.id, kind: 'video', rtpParameters });
    expect(produced).toMatchObject({ ok: true });
    // The customer cannot consume its own producer.
    const recv = await request<{ id: string }>(a.socket, 'media:createTransport', { direction: 'recv' });
    if (produced.ok && recv.ok) {
      const own = await request(a.socket, 'media:consume', { transportId: recv.data.id, producerId: produced.data.producerId, rtpCapabilities: caps.ok ? caps.data.rtpCapabilities : {} });
      expect(own).toMatchObject({ ok: false });
      expect(['forbidden', 'not_found']).toContain((own as { error: { code: string } }).error.code);
    }

    // A second call in parallel, with another teller (bob takes consultation in en).
    const bobToken = await loginStaff(server.url, 'bob', 'bob-demo-pass');
    const bob = open('/teller', bobToken);
    expect(await outcome(bob)).toEqual({ connected: true });
    await request(bob, 'teller:availability', { status: 'available' });
    const { customerToken, sessionId: bSession } = await createSession(server, { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-B' });
    const b = open('/customer', customerToken);
    expect(await outcome(b)).toEqual({ connected: true });
    const bobOffer = next(bob, 'offer:new');
    await request(b, 'queue:join', { consent: true });
    const bOffer = await bobOffer;
    expect(bOffer.sessionId).toBe(bSession);
    const bobStart = next(bob, 'call:start');
    await request(bob, 'offer:accept', { offerId: bOffer.offerId });
    await bobStart;
    // Bob's call cannot consume the producer of Alice's call.
    const bobRecv = await request<{ id: string }>(bob, 'media:createTransport', { direction: 'recv' });
    if (produced.ok && bobRecv.ok && caps.ok) {
      const foreign = await request(bob, 'media:consume', { transportId: bobRecv.data.id, producerId: produced.data.producerId, rtpCapabilities: caps.data.rtpCapabilities });
      expect(foreign).toMatchObject({ ok: false });
      expect(['forbidden', 'not_found']).toContain((foreign as { error: { code: string } }).error.code);
    }
    expect(server.app.media.stats().reduce((n, w) => n + w.routers, 0)).toBe(2);

    // Hang-up ends the call on both sides and closes its router.
    const endedTeller = next(teller, 'call:ended');
    const endedCustomer = next(a.socket, 'call:ended');
    expect(await request(a.socket, 'call:hangup', {})).toEqual({ ok: true, data: { state: 'ended' } });
    expect(await endedTeller).toMatchObject({ reason: 'customer_hangup', sessionId: a.sessionId });
    expect(await endedCustomer).toMatchObject({ reason: 'customer_hangup' });
    await request(bob, 'call:hangup', {});
    expect(server.app.media.stats().reduce((n, w) => n + w.routers + w.transports, 0)).toBe(0);
    const types = (await server.app.ledger.entriesOf(a.sessionId)).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['session.created', 'customer.consent', 'session.transition', 'offer.closed', 'call.started', 'call.ended']));
  });

  it('ends a queued customer who disconnects and does not come back as abandoned', async () => {
    const { socket, sessionId } = await customer();
    await request(socket, 'queue:join', { consent: true });
    socket.disconnect();
    await new Promise((r) => setTimeout(r, 2500)); // RECONNECT_GRACE_MS is 2000 in tests
    expect((await server.app.store.getSession(sessionId))!.state).toBe('abandoned');
  });
});
