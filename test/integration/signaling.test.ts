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

describe('customer namespace handshake', () => {
  it('refuses a missing or unknown token with token_invalid', async () => {
    expect(await outcome(open('/customer', undefined))).toMatchObject({ connected: false, code: 'token_invalid' });
    expect(await outcome(open('/customer', 'x'.repeat(43)))).toMatchObject({ connected: false, code: 'token_invalid' });
    expect(await outcome(open('/customer', 12345))).toMatchObject({ connected: false, code: 'token_invalid' });
  });

  it('spends the join token on first use: a second use is token_reused, the resume token still works', async () => {
    const { customerToken } = await createSession(server);
    const first = open('/customer', customerToken);
    const info = next(first, 'session:info');
    expect(await outcome(first)).toEqual({ connected: true });
    const { resumeToken, state } = await info;
    expect(state).toBe('created');
    expect(resumeToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await outcome(open('/customer', customerToken))).toMatchObject({ connected: false, code: 'token_reused' });
    expect(await outcome(open('/customer', resumeToken))).toEqual({ connected: true });
  });

  it('refuses an expired join token with token_expired', async () => {
    const { customerToken, sessionId } = await createSession(server);
    // The shortest configurable lifetime is 30 s; move this session's expiry into the past instead.
    await server.app.store.updateSession(sessionId, (s) => ({ ...s, tokenExpiresAt: Date.now() - 1 }));
    expect(await outcome(open('/customer', customerToken))).toMatchObject({ connected: false, code: 'token_expired' });
    await server.app.router.expire(sessionId);
    expect((await server.app.store.getSession(sessionId))!.state).toBe('expired');
  });

  it('refuses a staff token on the customer namespace and a customer token on the teller namespace', async () => {
    const staffToken = await loginStaff(server.url, 'alice', 'alice-demo-pass');
    expect(await outcome(open('/customer', staffToken))).toMatchObject({ connected: false, code: 'wrong_namespace' });
    const { customerToken } = await createSession(server);
    expect(await outcome(open('/teller', customerToken))).toMatchObject({ connected: false, code: 'wrong_namespace' });
    // ... and the customer token was not spent by the wrong attempt.
    expect(await outcome(open('/customer', customerToken))).toEqual({ connected: true });
  });

  it('refuses staff without the teller role, and forged or missing staff tokens', async () => {
    const compliance = await loginStaff(server.url, 'carol', 'carol-demo-pass');
    expect(await outcome(open('/teller', compliance))).toMatchObject({ connected: false, code: 'forbidden' });
    // Flip a character inside the signature: the last base64url character of a 32-byte HMAC carries
    // two padding bits, so changing it can leave the decoded signature the same.
    const genuine = await loginStaff(server.url, 'alice', 'alice-demo-pass');
    const at = genuine.length - 10;
    const forged = genuine.slice(0, at) + (genuine[at] === 'A' ? 'B' : 'A') + genuine.slice(at + 1);
    expect(await outcome(open('/teller', forged))).toMatchObject({ connected: false, code: 'token_invalid' });
    expect(await outcome(open('/teller', undefined))).toMatchObject({ connected: false, code: 'unauthorized' });
  });
});

describe('messages', () => {
  it('answers malformed messages with bad_request and keeps the connection', async () => {
    const { socket } = await customer();
    expect(await request(socket, 'queue:join', { consent: false })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(socket, 'queue:join', 'consent')).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(socket, 'queue:join', { consent: true, extra: 1 })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(socket, 'media:produce', { transportId: 'x', kind: 'smell', rtpParameters: {} })).toMatchObject({
      ok: false,
      error: { code: 'bad_request' },
    });
    // Without an acknowledgement callback the error comes back as protocol:error.
    const err = next(socket, 'protocol:error');
    (socket as unknown as { emit(e: string, p: unknown): void }).emit('queue:join', { consent: 'yes' });
    expect(await err).toMatchObject({ code: 'bad_request', event: 'queue:join' });
    expect(socket.connected).toBe(true);
    expect(await request(socket, 'queue:join', { consent: true })).toMatchObject({ ok: true, data: { position: 1 } });
  });

  it('answers oversized messages with too_large, and survives one past the transport limit', async () => {
    const { socket } = await customer();
    const big = { transportId: 't', kind: 'video', rtpParameters: { codecs: [{ mimeType: 'x'.repeat(20_000) }] } };
    expect(await request(socket, 'media:produce', big)).toMatchObject({ ok: false, error: { code: 'too_large' } });
    expect(socket.connected).toBe(true);
    const closed = new Promise<string>((resolve) => socket.once('disconnect', resolve));
    (socket as unknown as { emit(e: string, p: unknown): void }).emit('queue:join', { consent: true, pad: 'x'.repeat(2 * 1024 * 1024) });
    expect(await closed).toBe('transport close');
    // The server is unharmed: a new customer connects and is answered.
    const again = await customer();
    expect(await request(again.socket, 'queue:join', { consent: true })).toMatchObject({ ok: true });
  });

  it('refuses media before a call with invalid_state', async () => {
    const { socket } = await customer();
    expect(await request(socket, 'media:capabilities', {})).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect(await request(socket, 'media:createTransport', { direction: 'send' })).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect(await request(socket, 'call:hangup', {})).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
  });
});

