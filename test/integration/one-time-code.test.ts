/**
 * The one-time code over signaling, with the bank's webhook receiver on loopback: the teller's
 * "send code", the customer's attempts, and every refusal as a typed error that writes nothing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { verifyWebhookSignature } from '../../src/webhooks/index.ts';
import { callInProgress } from '../helpers/call.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { next, request, SocketClients } from '../helpers/socket.ts';
import { SECRET, startReceiver, type Receiver } from '../helpers/webhook-receiver.ts';

let bank: Receiver;
let server: TestServer;
let noWebhook: TestServer;
const clients = new SocketClients(() => server.url);
const plainClients = new SocketClients(() => noWebhook.url);
const OPENING = { businessType: 'corporate_account_opening', language: 'en', priority: 0, customerRef: 'CUST-OTP' };

beforeAll(async () => {
  bank = await startReceiver();
  server = await startTestServer({ WEBHOOKS: `test-bank=${bank.url}|${SECRET}` });
  noWebhook = await startTestServer();
});
afterEach(() => {
  clients.closeAll();
  plainClients.closeAll();
});
afterAll(async () => {
  await server?.close();
  await noWebhook?.close();
  await bank?.close();
});

describe('one-time code', () => {
  it('is delivered by signed webhook; wrong and malformed attempts are typed, the right one verifies once', async () => {
    const { teller, customer, sessionId } = await callInProgress(clients, server, undefined, OPENING);
    const requested = next(customer, 'otp:requested');
    const sent = await request<{ challengeId: string; expiresAt: number }>(teller, 'otp:send', {});
    expect(sent).toMatchObject({ ok: true });
    await requested;
    await bank.waitFor(1);
    const hook = bank.requests.find((r) => r.body.type === 'otp.requested' && r.body.data.sessionId === sessionId)!;
    expect(verifyWebhookSignature(SECRET, String(hook.headers['videoteller-signature']), hook.rawBody)).toMatchObject({ ok: true });
    const code = String(hook.body.data.code);
    // The code is nowhere in the evidence.
    expect(JSON.stringify(await server.app.ledger.entriesOf(sessionId))).not.toContain(code);

    // The outbox records the delivery as evidence once the receiver answered; wait for it, so the
    // ledger's size below changes only through what the test sends.
    await expect.poll(async () => (await server.app.ledger.entriesOf(sessionId)).some((e) => e.type === 'webhook.delivered')).toBe(true);
    const before = server.app.ledger.ledger.size;
    for (const bad of [{ code: '12345' }, { code: 'abcdef' }, { code: 123456 }, { code: '1234567' }, {}, { code: '123456', extra: 1 }]) {
      expect(await request(customer, 'otp:submit', bad), JSON.stringify(bad)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    }
    expect(await request(teller, 'otp:submit', { code })).toMatchObject({ ok: false, error: { code: 'bad_request' } }); // not the teller's message
    expect(await request(customer, 'otp:send', {})).toMatchObject({ ok: false, error: { code: 'bad_request' } }); // nor the customer's
    expect(server.app.ledger.ledger.size).toBe(before);

    const wrong = code === '000000' ? '111111' : '000000';
    const status = next(teller, 'otp:status');
    expect(await request(customer, 'otp:submit', { code: wrong })).toEqual({ ok: true, data: { result: 'wrong', attemptsLeft: 4 } });
    expect(await status).toEqual({ result: 'wrong', attemptsLeft: 4 });
    expect(await request(customer, 'otp:submit', { code: `${code.slice(0, 3)} ${code.slice(3)}` })).toEqual({ ok: true, data: { result: 'verified', attemptsLeft: 0 } });
    expect(await request(customer, 'otp:submit', { code })).toMatchObject({ ok: true, data: { result: 'no_code' } });
    const types = (await server.app.ledger.entriesOf(sessionId)).map((e) => e.type);
    expect(types.filter((t) => t.startsWith('otp.'))).toEqual(['otp.issued', 'otp.result', 'otp.result']);
    expect(types).toContain('webhook.delivered');
    // A second code within the minimum interval is refused (rate limit), typed.
    expect(await request(teller, 'otp:send', {})).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    await request(teller, 'call:hangup', {});
  });

  it('refuses a code for a business type that does not use one, and outside a call', async () => {
    const { teller, customer } = await callInProgress(clients, server, undefined, { ...OPENING, businessType: 'consultation' });
    expect(await request(teller, 'otp:send', {})).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect(await request(teller, 'call:hangup', {})).toMatchObject({ ok: true });
    expect(await request(customer, 'otp:submit', { code: '123456' })).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect(await request(teller, 'otp:send', {})).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
  });

  it("says so when the bank's system has no webhook to deliver the code, and issues none", async () => {
    const { teller, sessionId } = await callInProgress(plainClients, noWebhook, undefined, OPENING);
    expect(await request(teller, 'otp:send', {})).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    expect((await noWebhook.app.ledger.entriesOf(sessionId)).some((e) => e.type === 'otp.issued')).toBe(false);
    // Approval then needs the code: refused, typed.
    const refused = await request(teller, 'call:decide', { decision: 'approved', reason: 'identity_verified' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect((refused as { error: { message: string } }).error.message).toMatch(/one-time code/);
    await request(teller, 'call:hangup', {});
  });
});
