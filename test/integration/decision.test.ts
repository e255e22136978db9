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
/** No one-time code and no dual control for consultations (config/policy.yaml `decisions`). */
const CONSULTATION = { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-0001' };

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
    const { teller, customer, sessionId } = await callInProgress(undefined, CONSULTATION);
    expect((await api(`/api/sessions/${sessionId}/record`)).status).toBe(409);

    // Bad decisions are typed errors; the customer cannot decide at all.
    expect(await request(teller, 'call:decide', { decision: 'approved', reason: 'face_mismatch' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(teller, 'call:decide', { decision: 'maybe', reason: 'other' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(teller, 'call:decide', { decision: 'rejected', reason: 'other', note: 'x'.repeat(501) })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(customer, 'call:decide', { decision: 'approved', reason: 'identity_verified' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });

    // The decision ends the call: both sides are told, and the ack comes once the record is issued.
    const customerEnded = next(customer, 'call:ended');
    const decided = await request<{ state: string; decision: string; status: string; recordId: string; ledgerIndex: number; recording: unknown }>(teller, 'call:decide', {
      decision: 'approved',
      reason: 'identity_verified',
      note: 'passport checked',
    });
    expect(decided).toMatchObject({ ok: true, data: { sessionId, state: 'ended', decision: 'approved', status: 'issued', recording: null, supervisorId: null } });
    expect(await customerEnded).toMatchObject({ sessionId, reason: 'decided' });
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
      businessType: 'consultation',
      tellerId: 't-alice', // the staff id in the demo directory
      tellerScope: 'full_service',
      jti: decided.data.recordId,
      ledgerIndex: decided.data.ledgerIndex,
    });
    // Only the teller's own approval: a consultation needs no co-signature.
    expect(payload.approvals).toEqual([{ role: 'teller', staffId: 't-alice', decision: 'approved', at: expect.any(Number), entryIndex: expect.any(Number) }]);
    expect(payload.supervisorId).toBeUndefined();

    // The project's verifier: signature, entry, inclusion proof, checkpoint.
    const verified = await verifyRecord(record, { keys: jwks, origin: server.app.config.LEDGER_ORIGIN });
    expect(verified).toMatchObject({ ok: true });

    // The session shows the decision; the evidence has it, with the teller's note.
    const session = (await (await api(`/api/sessions/${sessionId}`)).json()) as { state: string; decision: { decision: string; recordId: string } };
    expect(session).toMatchObject({ state: 'ended', endReason: 'decided', decision: { decision: 'approved', status: 'issued', dualControl: false, recordId: decided.data.recordId } });
    const entries = await server.app.ledger.entriesOf(sessionId);
    const made = entries.find((e) => e.type === 'decision.made')!;
    expect(made.payload).toMatchObject({ decision: 'approved', reason: 'identity_verified', note: 'passport checked', dualControl: false });
    expect(payload.approvals).toMatchObject([{ entryIndex: made.index }]);
    expect(entries.find((e) => e.type === 'record.issued')?.index).toBe(record.index);
    // The record as handed out is also kept as a blob the ledger names: a replay has the JWS itself.
    expect(entries.find((e) => e.type === 'record.bundle_stored')?.payload).toMatchObject({ recordJti: decided.data.recordId, recordIndex: record.index });
    expect(await server.app.ledger.recordOf(sessionId)).toEqual(record);
    // No media was sent in this signaling-only call: the recorder says so in the evidence, before the call's end.
    const types = entries.map((e) => e.type);
    expect(entries.find((e) => e.type === 'recording.failed')?.payload).toMatchObject({ code: 'empty' });
    expect(types.indexOf('recording.failed')).toBeLessThan(types.indexOf('call.ended'));
    expect(types.indexOf('call.ended')).toBeLessThan(types.indexOf('record.issued'));

    // The call is over: hanging up again is refused, the record stays.
    expect(await request(teller, 'call:hangup', {})).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect((await api(`/api/sessions/${sessionId}/record`)).status).toBe(200);
  });

  it('enforces the teller\'s approval scope on the server: dana (account_queries) may reject but not approve a corporate account opening', async () => {
    const corporate = await callInProgress(['dana', 'dana-demo-pass']);
    const refused = await request(corporate.teller, 'call:decide', { decision: 'approved', reason: 'identity_verified' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect((refused as { error: { message: string } }).error.message).toMatch(/account_queries.*corporate_account_opening/);
    expect((await api(`/api/sessions/${corporate.sessionId}/record`)).status).toBe(409);
    // A rejection needs neither scope nor co-signature: its record is issued at once.
    expect(await request(corporate.teller, 'call:decide', { decision: 'rejected', reason: 'other', note: 'needs a full-service teller' })).toMatchObject({
      ok: true,
      data: { decision: 'rejected', status: 'issued' },
    });
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
    // Free the teller for the next test (a dropped socket would keep them busy for the grace period).
    expect(await request(teller, 'call:hangup', {})).toMatchObject({ ok: true });
  });

  it('answers a message no handler takes with a typed error instead of silence', async () => {
    const { customerToken } = await createSession(server);
    const customer = clients.open('/customer', customerToken);
    expect(await outcome(customer)).toEqual({ connected: true });
    expect(await request(customer, 'offer:accept', { offerId: 'x' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(customer, 'no:such:event', {})).toMatchObject({ ok: false, error: { code: 'bad_request' } });
  });
});

describe('dual control: a supervisor co-signs above the policy threshold', () => {
  const LARGE_WEALTH = { businessType: 'wealth_product', language: 'en', priority: 0, customerRef: 'CUST-W2', amount: { value: '300000.00', currency: 'EUR' } };

  async function supervisorSocket() {
    const s = clients.open('/supervisor', await loginStaff(server.url, 'sam', 'sam-demo-pass'));
    expect(await outcome(s)).toEqual({ connected: true });
    return s;
  }

  it('waits for the supervisor, who sees it with its evidence and co-signs; the record names both approvals', async () => {
    const supervisor = await supervisorSocket();
    const { teller, sessionId } = await callInProgress(['alice', 'alice-demo-pass'], LARGE_WEALTH);
    const pending = next(supervisor, 'cosign:pending');
    const decided = await request(teller, 'call:decide', { decision: 'approved', reason: 'identity_verified', note: 'large purchase' });
    expect(decided).toMatchObject({ ok: true, data: { sessionId, decision: 'approved', status: 'awaiting_cosign', recordId: null, ledgerIndex: null } });
    expect(await pending).toMatchObject({
      sessionId,
      businessType: 'wealth_product',
      tellerId: 't-alice',
      tellerScope: 'full_service',
      amount: { value: '300000.00', currency: 'EUR' },
      note: 'large purchase',
      recordingUrl: null,
    });
    expect((await pending).customerRef).not.toBe('CUST-W2'); // masked
    expect((await api(`/api/sessions/${sessionId}/record`)).status).toBe(409);
    expect(await request(supervisor, 'cosign:list', {})).toMatchObject({ ok: true, data: { pending: [{ sessionId }] } });

    // The supervisor may fetch this session's recording while it waits for them (this signaling-only
    // call has none: 404, not 403), and nothing else of the compliance API.
    const samToken = await loginStaff(server.url, 'sam', 'sam-demo-pass');
    const asSam = (p: string) => fetch(`${server.url}${p}`, { headers: { authorization: `Bearer ${samToken}` } });
    expect((await asSam(`/api/compliance/sessions/${sessionId}/recording`)).status).toBe(404);
    expect((await asSam(`/api/compliance/sessions/${sessionId}`)).status).toBe(403);
    expect((await asSam(`/api/compliance/sessions`)).status).toBe(403);

    // Bad or misplaced answers are typed errors and write nothing.
    const before = server.app.ledger.ledger.size;
    expect(await request(supervisor, 'cosign:decide', { sessionId: 'not-a-uuid', verdict: 'cosign' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(supervisor, 'cosign:decide', { sessionId, verdict: 'maybe' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(supervisor, 'cosign:decide', { sessionId, verdict: 'refuse' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(supervisor, 'cosign:decide', { sessionId, verdict: 'cosign', extra: 1 })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(await request(supervisor, 'cosign:decide', { sessionId: '00000000-0000-4000-8000-000000000000', verdict: 'cosign' })).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    expect(await request(teller, 'cosign:decide', { sessionId, verdict: 'cosign' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(server.app.ledger.ledger.size).toBe(before);

    const final = next(teller, 'decision:final');
    const closed = next(supervisor, 'cosign:closed');
    const cosigned = await request(supervisor, 'cosign:decide', { sessionId, verdict: 'cosign' });
    expect(cosigned).toMatchObject({ ok: true, data: { sessionId, decision: 'approved', status: 'issued', supervisorId: 's-sam' } });
    expect(await final).toMatchObject({ sessionId, decision: 'approved', status: 'issued', supervisorId: 's-sam' });
    expect(await closed).toEqual({ sessionId, verdict: 'cosign', supervisorId: 's-sam' });
    expect(await request(supervisor, 'cosign:decide', { sessionId, verdict: 'cosign' })).toMatchObject({ ok: false, error: { code: 'invalid_state' } });
    expect(await request(supervisor, 'cosign:list', {})).toMatchObject({ ok: true, data: { pending: [] } });
    expect((await asSam(`/api/compliance/sessions/${sessionId}/recording`)).status).toBe(403);

    const record = (await (await api(`/api/sessions/${sessionId}/record`)).json()) as { jws: string };
    const { payload } = await jwtVerify(record.jws, createLocalJWKSet(await (await fetch(`${server.url}/.well-known/jwks.json`)).json()));
    const entries = await server.app.ledger.entriesOf(sessionId);
    const cosignEntry = entries.find((e) => e.type === 'decision.cosigned')!;
    expect(cosignEntry).toMatchObject({ actor: 's-sam', payload: { verdict: 'cosign', tellerId: 't-alice' } });
    expect(payload).toMatchObject({
      decision: 'approved',
      tellerId: 't-alice',
      supervisorId: 's-sam',
      approvals: [
        { role: 'teller', staffId: 't-alice', decision: 'approved', entryIndex: entries.find((e) => e.type === 'decision.made')!.index },
        { role: 'supervisor', staffId: 's-sam', decision: 'cosigned', entryIndex: cosignEntry.index },
      ],
    });
  });

  it("a supervisor's refusal (with a note) makes the record a rejection", async () => {
    const supervisor = await supervisorSocket();
    const { teller, sessionId } = await callInProgress(['alice', 'alice-demo-pass'], { ...LARGE_WEALTH, customerRef: 'CUST-W3' });
    expect(await request(teller, 'call:decide', { decision: 'approved', reason: 'identity_verified' })).toMatchObject({ ok: true, data: { status: 'awaiting_cosign' } });
    const refused = await request(supervisor, 'cosign:decide', { sessionId, verdict: 'refuse', note: 'source of funds unclear' });
    expect(refused).toMatchObject({ ok: true, data: { decision: 'rejected', status: 'issued', supervisorId: 's-sam' } });
    const record = (await (await api(`/api/sessions/${sessionId}/record`)).json()) as { jws: string };
    const { payload } = await jwtVerify(record.jws, createLocalJWKSet(await (await fetch(`${server.url}/.well-known/jwks.json`)).json()));
    expect(payload).toMatchObject({ decision: 'rejected', reason: 'cosign_refused', supervisorId: 's-sam', approvals: [{ decision: 'approved' }, { decision: 'refused' }] });
    const entries = await server.app.ledger.entriesOf(sessionId);
    expect(entries.find((e) => e.type === 'decision.cosign_refused')?.payload).toMatchObject({ note: 'source of funds unclear' });
  });

  it('below the threshold, or for a rejection, no co-signature is asked', async () => {
    const small = await callInProgress(['alice', 'alice-demo-pass'], { ...LARGE_WEALTH, customerRef: 'CUST-W4', amount: { value: '1000', currency: 'EUR' } });
    expect(await request(small.teller, 'call:decide', { decision: 'approved', reason: 'identity_verified' })).toMatchObject({ ok: true, data: { status: 'issued' } });
    clients.closeAll();
    const large = await callInProgress(['alice', 'alice-demo-pass'], { ...LARGE_WEALTH, customerRef: 'CUST-W5' });
    expect(await request(large.teller, 'call:decide', { decision: 'rejected', reason: 'customer_withdrew' })).toMatchObject({ ok: true, data: { status: 'issued', decision: 'rejected' } });
  });

  it('only supervisors open the supervisor namespace', async () => {
    const teller = clients.open('/supervisor', await loginStaff(server.url, 'alice', 'alice-demo-pass'));
    expect(await outcome(teller)).toMatchObject({ connected: false, code: 'forbidden' });
    const { customerToken } = await createSession(server);
    const customer = clients.open('/supervisor', customerToken);
    expect(await outcome(customer)).toMatchObject({ connected: false, code: 'wrong_namespace' });
    const nobody = clients.open('/supervisor', 'not-a-token');
    expect(await outcome(nobody)).toMatchObject({ connected: false, code: 'token_invalid' });
    // A supervisor cannot take calls.
    const sam = clients.open('/teller', await loginStaff(server.url, 'sam', 'sam-demo-pass'));
    expect(await outcome(sam)).toMatchObject({ connected: false, code: 'forbidden' });
  });

  it('refuses a session amount that is not a decimal string with a currency', async () => {
    for (const amount of [{ value: 300000, currency: 'EUR' }, { value: '1e6', currency: 'EUR' }, { value: '100', currency: 'euro' }, { value: '100' }, { value: '-5', currency: 'EUR' }]) {
      const res = await fetch(`${server.url}/api/sessions`, {
        method: 'POST',
        headers: { 'x-api-key': server.apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ ...LARGE_WEALTH, amount }),
      });
      expect(res.status, JSON.stringify(amount)).toBe(400);
    }
  });
});
