/**
 * The teller's decision over signaling, and the verification record the bank's system fetches:
 * checked with a plain JOSE library against the public JWKS, and with the project's own verifier
 * (signature, ledger entry, inclusion proof, signed checkpoint).
 */
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { verifyRecord } from '../../src/ledger/index.ts';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { callInProgress as startCall } from '../helpers/call.ts';
import { next, outcome, request, SocketClients } from '../helpers/socket.ts';

let server: TestServer;
const clients = new SocketClients(() => server.url);

beforeAll(async () => {
  server = await startTestServer();
});
afterEach(() => clients.closeAll());
afterAll(async () => {
  await server?.close();
});

async function api(path: string): Promise<Response> {
  return fetch(`${server.url}${path}`, { headers: { 'x-api-key': server.apiKey } });
}

/** A teller (alice unless told) in a call with a new customer. */
function callInProgress(who: [string, string] = ['alice', 'alice-demo-pass'], body?: Record<string, unknown>) {
  return startCall(clients, server, { username: who[0], password: who[1] }, body);
}

describe('deciding a call issues a verification record', () => {
  it('approves once, and the bank system gets a record any JOSE library verifies with the JWKS', async () => {
    const { teller, customer, sessionId } = await callInProgress();
    expect((await api(`/api/sessions/${sessionId}/record`)).status).toBe(409);

    // Bad decisions are typed errors; the customer cannot decide at all.
    expect(await request(teller, 'call:decide', { decision: 'approved', reason: 'face_mismatch' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(teller, 'call:decide', { decision: 'maybe', reason: 'other' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(teller, 'call:decide', { decision: 'rejected', reason: 'other', note: 'x'.repeat(501) })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(customer, 'call:decide', { decision: 'approved', reason: 'identity_verified' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });

    const decided = await request<{ state: string; decision: string; recordId: string; ledgerIndex: number }>(teller, 'call:decide', {
      decision: 'approved',
      reason: 'identity_verified',
      note: 'passport checked',
    });
    expect(decided).toMatchObject({ ok: true, data: { state: 'decided', decision: 'approved' } });
    if (!decided.ok) return;
    // Once only.
    expect(await request(teller, 'call:decide', { decision: 'rejected', reason: 'other', note: 'changed my mind' })).toMatchObject({
      ok: false,
      error: { code: 'invalid_state' },
    });

    const res = await api(`/api/sessions/${sessionId}/record`);
    expect(res.status).toBe(200);
    const record = (await res.json()) as { jws: string; index: number; inclusionProof: string[]; checkpoint: string; entry: string };
    expect(record.index).toBe(decided.data.ledgerIndex);

    // A plain JOSE library and the public JWKS.
    const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
    const { payload, protectedHeader } = await jwtVerify(record.jws, createLocalJWKSet(jwks), { algorithms: ['EdDSA'] });
    expect(protectedHeader.kid).toBeTruthy();
    expect(payload).toMatchObject({
      decision: 'approved',
      reason: 'identity_verified',
      sessionId,
      sub: sessionId,
      customerRef: 'CUST-0001',
      businessType: 'corporate_account_opening',
      tellerId: 't-alice', // the staff id in the demo directory
      jti: decided.data.recordId,
      ledgerIndex: decided.data.ledgerIndex,
    });

    // The project's verifier: signature, entry, inclusion proof, checkpoint.
    const verified = await verifyRecord(record, { keys: jwks, origin: server.app.config.LEDGER_ORIGIN });
    expect(verified).toMatchObject({ ok: true });

    // The session shows the decision; the evidence has it, with the teller's note.
    const session = (await (await api(`/api/sessions/${sessionId}`)).json()) as { state: string; decision: { decision: string; recordId: string } };
    expect(session).toMatchObject({ state: 'decided', decision: { decision: 'approved', recordId: decided.data.recordId } });
    const entries = await server.app.ledger.entriesOf(sessionId);
    expect(entries.find((e) => e.type === 'decision.made')?.payload).toMatchObject({ decision: 'approved', reason: 'identity_verified', note: 'passport checked' });
    expect(entries.find((e) => e.type === 'record.issued')?.index).toBe(record.index);

    // Hanging up after the decision ends the session; the record stays.
    const ended = next(customer, 'call:ended');
    expect(await request(teller, 'call:hangup', {})).toMatchObject({ ok: true, data: { state: 'ended' } });
    await ended;
    expect((await api(`/api/sessions/${sessionId}/record`)).status).toBe(200);
  });

  it('enforces the teller\'s approval scope on the server: dana (account_queries) may reject but not approve a corporate account opening', async () => {
    const corporate = await callInProgress(['dana', 'dana-demo-pass']);
    const refused = await request(corporate.teller, 'call:decide', { decision: 'approved', reason: 'identity_verified' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect((refused as { error: { message: string } }).error.message).toMatch(/account_queries.*corporate_account_opening/);
    expect((await api(`/api/sessions/${corporate.sessionId}/record`)).status).toBe(409);
    expect(await request(corporate.teller, 'call:decide', { decision: 'rejected', reason: 'other', note: 'needs a full-service teller' })).toMatchObject({ ok: true });
    await request(corporate.teller, 'call:hangup', {});
    clients.closeAll();

    const wealth = await callInProgress(['dana', 'dana-demo-pass'], { businessType: 'wealth_product', language: 'en', priority: 0, customerRef: 'CUST-W' });
    expect(await request(wealth.teller, 'call:decide', { decision: 'approved', reason: 'identity_verified' })).toMatchObject({ ok: true });
    const record = (await (await api(`/api/sessions/${wealth.sessionId}/record`)).json()) as { jws: string };
    const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
    const { payload } = await jwtVerify(record.jws, createLocalJWKSet(jwks));
    expect(payload).toMatchObject({ decision: 'approved', businessType: 'wealth_product', tellerId: 't-dana', tellerScope: 'account_queries' });
  });

  it('refuses a decision outside a call, and a record to another bank system', async () => {
    const teller = clients.open('/teller', await loginStaff(server.url, 'alice', 'alice-demo-pass'));
    expect(await outcome(teller)).toEqual({ connected: true });
    expect(await request(teller, 'call:decide', { decision: 'approved', reason: 'identity_verified' })).toMatchObject({
      ok: false,
      error: { code: 'invalid_state' },
    });
    const { sessionId } = await createSession(server);
    const other = await fetch(`${server.url}/api/sessions/${sessionId}/record`, { headers: { 'x-api-key': 'not-a-key' } });
    expect(other.status).toBe(401);
    expect((await api(`/api/sessions/not-a-uuid/record`)).status).toBe(400);
    expect((await api(`/api/sessions/00000000-0000-4000-8000-000000000000/record`)).status).toBe(404);
  });

  it('refuses the identity messages with typed errors when they are malformed or the check is not running', async () => {
    const { teller, customer } = await callInProgress(); // no reference photo: no identity checks
    const checklist = { hologram: true, personalisation: true, material: true, securityPrint: true };
    expect(await request(teller, 'liveness:start', { now: true })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(teller, 'liveness:start', {})).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect(await request(teller, 'document:capture', {})).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(teller, 'document:capture', { checklist: { ...checklist, hologram: 'yes' } })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(teller, 'document:capture', { checklist: { ...checklist, photo: 'data:image/png;base64,AAAA' } })).toMatchObject({
      ok: false,
      error: { code: 'bad_request' },
    });
    expect(await request(teller, 'document:capture', { checklist })).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    // The customer cannot drive the teller's checks.
    expect(await request(customer, 'liveness:start', {})).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(customer, 'document:capture', { checklist })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
  });

  it('answers a message no handler takes with a typed error instead of silence', async () => {
    const { customerToken } = await createSession(server);
    const customer = clients.open('/customer', customerToken);
    expect(await outcome(customer)).toEqual({ connected: true });
    expect(await request(customer, 'offer:accept', { offerId: 'x' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(customer, 'no:such:event', {})).toMatchObject({ ok: false, error: { code: 'bad_request' } });
  });
});
