/**
 * POST /api/authorizations against the real server, with real verification records issued over
 * signaling (teller alice decides a call). Those records carry no identity evidence (no reference
 * photo), so the allowed path uses a test policy (POLICY_FILE) with a `consultation_followup`
 * type that requires none; the shipped `corporate_account_opening` rules are copied in to show
 * the denials.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.ts';
import { authorizationClaimsSchema, AUTHORIZATION_TYP } from '../../src/authorization/authorizer.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { issueRecord, type LedgerEntry, type RecordBundle } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/logger.ts';
import { callInProgress } from '../helpers/call.ts';
import { createSession, startTestServer, type TestServer } from '../helpers/server.ts';
import { next, request, SocketClients } from '../helpers/socket.ts';

const TEST_POLICY = `
version: 1
transactionTypes:
  consultation_followup:
    businessTypes: [consultation]
    requires: { faceMatch: false, liveness: false, document: false, recording: false }
    maxRecordAgeS: 600
    approverScopes: [consult_only, account_queries, full_service]
  consultation_premium:
    businessTypes: [consultation]
    requires: { faceMatch: false, liveness: false, document: false, recording: false }
    maxRecordAgeS: 600
    approverScopes: [full_service]
  small_payment:
    businessTypes: [consultation]
    requires: { faceMatch: false, liveness: false, document: false, recording: false }
    maxRecordAgeS: 600
    amount: { required: true, currencies: [EUR] }
    dualControl: { above: { EUR: 1000 } }
    approverScopes: [account_queries, full_service]
  corporate_account_opening:
    businessTypes: [corporate_account_opening]
    requires: { faceMatch: true, liveness: true, document: true, recording: true }
    maxRecordAgeS: 259200
    dualControl: always
    approverScopes: [full_service]
`;

const policyDir = mkdtempSync(path.join(os.tmpdir(), 'vt-authz-policy-'));
const POLICY_FILE = path.join(policyDir, 'policy.yaml');
writeFileSync(POLICY_FILE, TEST_POLICY);

let server: TestServer;
const clients = new SocketClients(() => server.url);

beforeAll(async () => {
  server = await startTestServer({ POLICY_FILE });
});
afterEach(() => clients.closeAll());
afterAll(async () => {
  await server?.close();
  rmSync(policyDir, { recursive: true, force: true });
});

type Answer = { authorized: true; authorization: string; ledgerIndex: number } | { authorized: false; reasons: { code: string; message: string }[]; ledgerIndex: number; error: { code: string } };

async function authorize(body: unknown, s: TestServer = server, headers: Record<string, string> = { 'x-api-key': s.apiKey }): Promise<{ status: number; body: Answer & { error?: { code: string; message: string } } }> {
  const res = await fetch(`${s.url}/api/authorizations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Answer & { error?: { code: string; message: string } } };
}

/** A session of `businessType` that teller alice takes and decides over signaling; its record as the bank fetches it. */
async function decidedRecord(
  s: TestServer,
  sockets: SocketClients,
  businessType: 'consultation' | 'corporate_account_opening',
  decision: 'approved' | 'rejected' = 'approved',
  tellerName: 'alice' | 'bob' = 'alice',
): Promise<{ record: RecordBundle; sessionId: string }> {
  const { teller, customer, sessionId } = await callInProgress(sockets, s, { username: tellerName, password: `${tellerName}-demo-pass` }, {
    businessType,
    language: 'en',
    priority: 0,
    customerRef: 'CUST-0001',
  });
  // The decision ends the call; its acknowledgement comes once the record is issued.
  const ended = next(customer, 'call:ended');
  const decided = await request(teller, 'call:decide', decision === 'approved' ? { decision, reason: 'identity_verified' } : { decision, reason: 'other', note: 'customer left' });
  expect(decided).toMatchObject({ ok: true, data: { status: 'issued' } });
  await ended;
  sockets.closeAll();
  const res = await fetch(`${s.url}/api/sessions/${sessionId}/record`, { headers: { 'x-api-key': s.apiKey } });
  expect(res.status).toBe(200);
  return { record: (await res.json()) as RecordBundle, sessionId };
}

async function authorizationEntries(sessionId: string, s: TestServer = server): Promise<LedgerEntry[]> {
  return (await s.app.ledger.entriesOf(sessionId)).filter((e) => e.type.startsWith('authorization.'));
}

function reasonCodes(a: Answer): string[] {
  return a.authorized ? [] : a.reasons.map((r) => r.code);
}

describe('POST /api/authorizations', () => {
  it('authorizes once with a valid record, signs the answer, logs it; the same record again is a replay', async () => {
    const { record, sessionId } = await decidedRecord(server, clients, 'consultation');
    const recordJti = decodeJwt(record.jws).jti;

    const first = await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record });
    expect(first.status).toBe(200);
    expect(first.body.authorized).toBe(true);
    if (!first.body.authorized) return;

    // Any JOSE library verifies it with the public JWKS.
    const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
    const { payload, protectedHeader } = await jwtVerify(first.body.authorization, createLocalJWKSet(jwks), { algorithms: ['EdDSA'], typ: AUTHORIZATION_TYP });
    expect(protectedHeader.kid).toBe(server.app.ledger.keyRing.activeKid);
    const claims = authorizationClaimsSchema.parse(payload);
    expect(claims).toMatchObject({
      iss: server.app.config.LEDGER_ORIGIN,
      sub: sessionId,
      sessionId,
      transactionType: 'consultation_followup',
      customerRef: 'CUST-0001',
      recordJti,
      tellerId: 't-alice',
      tellerScope: 'full_service',
      dualControl: false,
      ledgerIndex: first.body.ledgerIndex,
    });
    expect(claims.amount).toBeUndefined();

    // Its own ledger entry commits the same claims.
    const [granted] = await authorizationEntries(sessionId);
    expect(granted).toMatchObject({ index: first.body.ledgerIndex, type: 'authorization.granted', actor: 'api:test-bank', payload: { recordJti, transactionType: 'consultation_followup' } });
    const { ledgerIndex: _i, ...base } = claims;
    expect(granted!.payload.authorization).toEqual(base);

    // Replay: refused, whatever the transaction; logged too.
    const again = await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record });
    expect(again.status).toBe(403);
    expect(again.body).toMatchObject({ authorized: false, error: { code: 'forbidden' } });
    expect(reasonCodes(again.body)).toEqual(['record_already_used']);
    const other = await authorize({ transactionType: 'small_payment', amount: '10.00', currency: 'EUR', customerRef: 'CUST-0001', record });
    expect(reasonCodes(other.body)).toEqual(['record_already_used']);

    const entries = await authorizationEntries(sessionId);
    expect(entries.map((e) => e.type)).toEqual(['authorization.granted', 'authorization.denied', 'authorization.denied']);
    expect(entries[1]).toMatchObject({ index: again.body.ledgerIndex, payload: { recordJti, recordVerified: true, customerRef: 'CUST-0001', reasons: [{ code: 'record_already_used' }] } });
    expect(entries[2]!.payload).toMatchObject({ transactionType: 'small_payment', amount: '10.00', currency: 'EUR' });
  });

  it('lets only one of three concurrent requests with the same record through', async () => {
    const { record, sessionId } = await decidedRecord(server, clients, 'consultation');
    const body = { transactionType: 'consultation_followup', customerRef: 'CUST-0001', record };
    const answers = await Promise.all([authorize(body), authorize(body), authorize(body)]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 403, 403]);
    for (const a of answers.filter((x) => x.status === 403)) expect(reasonCodes(a.body)).toEqual(['record_already_used']);
    expect((await authorizationEntries(sessionId)).filter((e) => e.type === 'authorization.granted')).toHaveLength(1);
  });

  it('refuses a consultation record for corporate account opening, listing every reason', async () => {
    const { record, sessionId } = await decidedRecord(server, clients, 'consultation');
    const res = await authorize({ transactionType: 'corporate_account_opening', customerRef: 'CUST-0001', record });
    expect(res.status).toBe(403);
    expect(reasonCodes(res.body)).toEqual([
      'business_type_not_allowed',
      'face_match_required',
      'liveness_required',
      'document_required',
      'recording_required',
      'dual_control_missing',
    ]);
    const [denied] = await authorizationEntries(sessionId);
    expect(denied).toMatchObject({ index: res.body.ledgerIndex, type: 'authorization.denied', payload: { transactionType: 'corporate_account_opening', recordVerified: true } });
    expect((denied!.payload.reasons as { code: string }[]).map((r) => r.code)).toEqual(reasonCodes(res.body));

    // A denial does not spend the record.
    expect((await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record })).status).toBe(200);
  });

  it('refuses a corporate record without identity evidence, a rejected decision, another customer, and amount rules', async () => {
    const corporate = await decidedRecord(server, clients, 'corporate_account_opening');
    const opening = await authorize({ transactionType: 'corporate_account_opening', customerRef: 'CUST-0001', record: corporate.record });
    expect(reasonCodes(opening.body)).toEqual(['face_match_required', 'liveness_required', 'document_required', 'recording_required', 'dual_control_missing']);

    const rejected = await decidedRecord(server, clients, 'consultation', 'rejected');
    const r = await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-9999', record: rejected.record });
    expect(reasonCodes(r.body)).toEqual(['decision_not_approved', 'customer_mismatch']);
    // The other customer's reference is not written whole into this session's evidence.
    const [denied] = await authorizationEntries(rejected.sessionId);
    expect(denied!.payload.customerRef).toBe('*****9999');
    expect(JSON.stringify(denied)).not.toContain('CUST-9999');

    const { record } = await decidedRecord(server, clients, 'consultation');
    const pay = (extra: Record<string, unknown>) => authorize({ transactionType: 'small_payment', customerRef: 'CUST-0001', record, ...extra });
    expect(reasonCodes((await pay({})).body)).toEqual(['amount_missing', 'currency_missing']);
    expect(reasonCodes((await pay({ amount: '5.00', currency: 'USD' })).body)).toEqual(['currency_not_allowed']);
    expect(reasonCodes((await pay({ amount: '1000.01', currency: 'EUR' })).body)).toEqual(['dual_control_missing']);
    expect(reasonCodes((await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record, amount: '1.00', currency: 'EUR' })).body)).toEqual(['amount_not_allowed']);
    const ok = await pay({ amount: '1000.00', currency: 'EUR' });
    expect(ok.status).toBe(200);
    if (ok.body.authorized) expect(decodeJwt(ok.body.authorization)).toMatchObject({ amount: '1000.00', currency: 'EUR', dualControl: false });
  });

  it("refuses a record approved by a teller whose approval scope the type does not list", async () => {
    // bob may approve consultations (consult_only); consultation_premium needs full_service.
    const { record } = await decidedRecord(server, clients, 'consultation', 'approved', 'bob');
    expect(decodeJwt(record.jws)).toMatchObject({ tellerId: 't-bob', tellerScope: 'consult_only' });
    const premium = await authorize({ transactionType: 'consultation_premium', customerRef: 'CUST-0001', record });
    expect(reasonCodes(premium.body)).toEqual(['approver_scope_not_allowed']);
    expect(!premium.body.authorized && premium.body.reasons[0]!.message).toContain('consult_only');
    const followup = await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record });
    expect(followup.status).toBe(200);
    if (followup.body.authorized) expect(decodeJwt(followup.body.authorization)).toMatchObject({ tellerId: 't-bob', tellerScope: 'consult_only' });
  });

  it('refuses an edited record as invalid, and logs it as unverified under the session it claims', async () => {
    const { record, sessionId } = await decidedRecord(server, clients, 'consultation');
    const [h, p, sig] = record.jws.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const edited = { ...record, jws: [h, Buffer.from(JSON.stringify({ ...claims, businessType: 'corporate_account_opening' })).toString('base64url'), sig].join('.') };
    const res = await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record: edited });
    expect(res.status).toBe(403);
    expect(reasonCodes(res.body)).toEqual(['record_invalid']);
    expect(!res.body.authorized && res.body.reasons[0]!.message).toContain('signature');

    // A proof that does not lead to the checkpoint, or an entry that is not the record's, fails too.
    const badProof = await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record: { ...record, index: record.index + 1 } });
    expect(reasonCodes(badProof.body)).toEqual(['record_invalid']);

    const entries = await authorizationEntries(sessionId);
    expect(entries.map((e) => e.type)).toEqual(['authorization.denied', 'authorization.denied']);
    expect(entries[0]!.payload).toMatchObject({ recordJti: claims.jti, recordVerified: false, customerRef: '*****0001', reasons: [{ code: 'record_invalid' }] });

    // The untouched record still works: an invalid copy did not spend it.
    expect((await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record })).status).toBe(200);

    // A record whose JWS is no JWT at all is logged apart.
    const garbage = await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record: { ...record, jws: 'not.a.jws' } });
    expect(reasonCodes(garbage.body)).toEqual(['record_invalid']);
    const unattributed = await server.app.ledger.entriesOf('authorization-unattributed');
    expect(unattributed.at(-1)).toMatchObject({ index: garbage.body.ledgerIndex, type: 'authorization.denied', payload: { recordJti: null, recordVerified: false } });
  });

  it('refuses an expired record, and still lists what else is wrong with it', async () => {
    // A record signed by this server an hour ago with a 60 s lifetime: issued through the
    // server's own ledger and key ring with the issuer's clock set back (the only way to get
    // an expired record without waiting; RECORD_TTL_S is at least 60 s).
    const { sessionId } = await createSession(server, { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-0001' });
    const issued = await issueRecord(
      { ledger: server.app.ledger.ledger, keyRing: server.app.ledger.keyRing, ttlSeconds: 60, now: () => new Date(Date.now() - 3600_000) },
      { decision: 'approved', reason: 'identity_verified', sessionId, customerRef: 'CUST-0001', businessType: 'consultation', tellerId: 't-alice', tellerScope: 'full_service', evidence: {} },
    );
    const { claims: _c, kid: _k, ...record } = issued;
    const res = await authorize({ transactionType: 'consultation_followup', customerRef: 'CUST-0001', record });
    expect(res.status).toBe(403);
    expect(reasonCodes(res.body)).toEqual(['record_expired', 'record_too_old']);
    expect((await authorizationEntries(sessionId))[0]).toMatchObject({ type: 'authorization.denied', payload: { recordJti: issued.claims.jti, recordVerified: true } });
  });

  it('answers bad bodies with 400 and no API key with 401, logging nothing', async () => {
    const { record } = await decidedRecord(server, clients, 'consultation');
    const size = server.app.ledger.ledger.size;
    const good = { transactionType: 'consultation_followup', customerRef: 'CUST-0001', record };
    const bad: unknown[] = [
      {},
      { ...good, record: undefined },
      { ...good, record: 'a record' },
      { ...good, record: { ...record, format: 'other' } },
      { ...good, transactionType: 'wire' },
      { ...good, transactionType: 'Not A Type' },
      { ...good, amount: 10, currency: 'EUR' },
      { ...good, amount: '1e21', currency: 'EUR' },
      { ...good, amount: '0.00', currency: 'EUR' },
      { ...good, amount: '-5', currency: 'EUR' },
      { ...good, currency: 'eur' },
      { ...good, customerRef: 'has spaces' },
      { ...good, extra: true },
      '{"transactionType":',
      [],
    ];
    for (const body of bad) {
      const res = await authorize(body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.error?.code).toBe('bad_request');
    }
    expect((await authorize({ ...good, transactionType: 'wire' })).body.error?.message).toContain('consultation_followup');

    for (const headers of [{}, { 'x-api-key': 'not-a-valid-key-at-all' }] as Record<string, string>[]) {
      const res = await authorize(good, server, headers);
      expect(res.status).toBe(401);
      expect(res.body.error?.code).toBe('unauthorized');
    }
    expect(server.app.ledger.ledger.size).toBe(size);
    // The record was not spent by any of that.
    expect((await authorize(good)).status).toBe(200);
  });
});

describe('replay protection across a restart', () => {
  it('still refuses a spent record after the server restarts on the same DATA_DIR', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'vt-authz-restart-'));
    const env = { POLICY_FILE, DATA_DIR: dataDir };
    let s: TestServer | undefined;
    try {
      s = await startTestServer(env);
      const sockets = new SocketClients(() => s!.url);
      const { record, sessionId } = await decidedRecord(s, sockets, 'consultation');
      const spare = await decidedRecord(s, sockets, 'consultation');
      const body = { transactionType: 'consultation_followup', customerRef: 'CUST-0001', record };
      expect((await authorize(body, s)).status).toBe(200);
      await s.close();

      s = await startTestServer(env);
      const again = await authorize(body, s);
      expect(again.status).toBe(403);
      expect(reasonCodes(again.body)).toEqual(['record_already_used']);
      expect((await authorizationEntries(sessionId, s)).map((e) => e.type)).toEqual(['authorization.granted', 'authorization.denied']);
      // A record not yet used before the restart still authorizes once.
      expect((await authorize({ ...body, record: spare.record }, s)).status).toBe(200);
      expect((await authorize({ ...body, record: spare.record }, s)).status).toBe(403);
    } finally {
      await s?.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('the policy at start', () => {
  it('a bad POLICY_FILE stops the start, naming the file and the field', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'vt-authz-badpolicy-'));
    const bad = path.join(policyDir, 'bad.yaml');
    writeFileSync(bad, TEST_POLICY.replace('maxRecordAgeS: 600', 'maxRecordAgeS: soon'));
    try {
      const config = loadConfig({ PORT: '0', DATA_DIR: dataDir, POLICY_FILE: bad, LOG_LEVEL: 'silent' });
      const err = await buildApp(config, createLogger('silent')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toContain(`POLICY_FILE ${bad}: transactionTypes.consultation_followup.maxRecordAgeS:`);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
