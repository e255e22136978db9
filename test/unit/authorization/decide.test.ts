/**
 * The authorization decision as a pure function: every rule alone, then every rule at once
 * (all of them are listed, not only the first).
 */
import { describe, expect, it } from 'vitest';
import { DENIAL_CODES, evaluate, type AuthorizationRequest, type RecordCheck } from '../../../src/authorization/decide.ts';
import { parseAmount, parsePolicy } from '../../../src/authorization/policy.ts';
import type { RecordClaims } from '../../../src/ledger/index.ts';

const NOW = new Date('2026-03-01T12:00:00.000Z');
const NOW_S = NOW.getTime() / 1000;
const SHA = 'ab'.repeat(32);

const policy = parsePolicy(
  {
    version: 1,
    transactionTypes: {
      corporate_account_opening: {
        businessTypes: ['corporate_account_opening'],
        requires: { faceMatch: true, liveness: true, document: true, recording: true, oneTimeCode: true },
        maxRecordAgeS: 3600,
        dualControl: 'always',
        approverScopes: ['full_service'],
      },
      large_transfer: {
        businessTypes: ['corporate_account_opening', 'wealth_product'],
        requires: { faceMatch: true, liveness: true, document: false, recording: false },
        maxRecordAgeS: 600,
        amount: { required: true, currencies: ['EUR', 'CHF'] },
        dualControl: { above: { EUR: 100000, CHF: '90000.50' } },
        approverScopes: ['full_service'],
      },
      optional_amount: {
        businessTypes: ['consultation'],
        requires: { faceMatch: false, liveness: false, document: false, recording: false },
        maxRecordAgeS: 600,
        amount: { required: false, currencies: ['EUR'] },
        approverScopes: ['consult_only'],
      },
      no_evidence: {
        businessTypes: ['consultation'],
        requires: { faceMatch: false, liveness: false, document: false, recording: false },
        maxRecordAgeS: 600,
        approverScopes: ['consult_only', 'account_queries', 'full_service'],
      },
    },
  },
  'test',
);

function claims(over: Partial<RecordClaims> = {}): RecordClaims {
  return {
    decision: 'approved',
    reason: 'identity_verified',
    sessionId: '11111111-1111-4111-8111-111111111111',
    customerRef: 'CUST-0001',
    businessType: 'corporate_account_opening',
    tellerId: 't-alice',
    tellerScope: 'full_service',
    supervisorId: 's-sam',
    evidence: {
      faceMatch: { score: 0.9, decision: 'match', threshold: 0.45 },
      liveness: { outcome: 'passed', challenges: 3 },
      document: { captured: true, type: 'passport', imageSha256: SHA },
      recording: { sha256: SHA, bytes: 550_000, durationMs: 4000, startedAt: NOW_S * 1000 - 70_000, endedAt: NOW_S * 1000 - 66_000 },
      oneTimeCode: { result: 'verified', attempts: 1 },
    },
    iss: 'videoteller.local/ledger',
    sub: '11111111-1111-4111-8111-111111111111',
    jti: '22222222-2222-4222-8222-222222222222',
    iat: NOW_S - 60,
    exp: NOW_S + 86_400,
    ledgerIndex: 7,
    ...over,
  };
}
const ok = (over: Partial<RecordClaims> = {}): RecordCheck => ({ ok: true, claims: claims(over) });
const opening: AuthorizationRequest = { transactionType: 'corporate_account_opening', customerRef: 'CUST-0001' };
const transfer = (amount: string, currency = 'EUR'): AuthorizationRequest => ({ transactionType: 'large_transfer', customerRef: 'CUST-0001', amount, currency });

function codes(d: ReturnType<typeof evaluate>): string[] {
  return d.allowed ? [] : d.reasons.map((r) => r.code);
}

describe('evaluate: allowed', () => {
  it('allows a complete, fresh, approved record of the right kind', () => {
    expect(evaluate(policy, opening, ok(), NOW)).toEqual({ allowed: true, dualControl: true });
    expect(evaluate(policy, transfer('5000.00'), ok({ supervisorId: undefined }), NOW)).toEqual({ allowed: true, dualControl: false });
    expect(evaluate(policy, { transactionType: 'no_evidence', customerRef: 'CUST-0001' }, ok({ businessType: 'consultation', evidence: {}, supervisorId: undefined }), NOW)).toEqual({
      allowed: true,
      dualControl: false,
    });
  });

  it('accepts a record exactly at its maximum age, not one second more', () => {
    expect(evaluate(policy, opening, ok({ iat: NOW_S - 3600 }), NOW).allowed).toBe(true);
    expect(codes(evaluate(policy, opening, ok({ iat: NOW_S - 3601 }), NOW))).toEqual(['record_too_old']);
  });
});

describe('evaluate: each rule alone', () => {
  it('refuses a record that does not verify, with its problem', () => {
    const d = evaluate(policy, opening, { ok: false, problem: { kind: 'signature', message: 'the record signature does not verify' } }, NOW);
    expect(d).toMatchObject({ allowed: false, reasons: [{ code: 'record_invalid' }] });
    expect(!d.allowed && d.reasons[0]!.message).toContain('signature');
  });

  it('refuses an expired record; with authenticated claims it lists the other failures too', () => {
    expect(codes(evaluate(policy, opening, { ok: false, problem: { kind: 'expired', message: 'expired at …' } }, NOW))).toEqual(['record_expired']);
    const expired: RecordCheck = { ok: false, problem: { kind: 'expired', message: 'expired' }, claims: claims({ iat: NOW_S - 7200, exp: NOW_S - 10 }) };
    expect(codes(evaluate(policy, opening, expired, NOW))).toEqual(['record_expired', 'record_too_old']);
  });

  it('refuses a rejected decision, naming it', () => {
    const d = evaluate(policy, opening, ok({ decision: 'rejected', reason: 'face_mismatch' }), NOW);
    expect(d).toMatchObject({ allowed: false, reasons: [{ code: 'decision_not_approved' }] });
    expect(!d.allowed && d.reasons[0]!.message).toContain('face_mismatch');
  });

  it('refuses a record of another business type', () => {
    expect(codes(evaluate(policy, opening, ok({ businessType: 'consultation' }), NOW))).toEqual(['business_type_not_allowed']);
    expect(codes(evaluate(policy, opening, ok({ businessType: 'wealth_product' }), NOW))).toEqual(['business_type_not_allowed']);
    expect(codes(evaluate(policy, transfer('10'), ok({ businessType: 'wealth_product' }), NOW))).toEqual([]);
  });

  it('refuses another customer without echoing either reference', () => {
    const d = evaluate(policy, { ...opening, customerRef: 'CUST-9999' }, ok(), NOW);
    expect(codes(d)).toEqual(['customer_mismatch']);
    expect(!d.allowed && d.reasons[0]!.message).not.toMatch(/CUST/);
  });

  it('requires a face match that matched', () => {
    const ev = claims().evidence;
    expect(codes(evaluate(policy, opening, ok({ evidence: { ...ev, faceMatch: undefined } }), NOW))).toEqual(['face_match_required']);
    for (const decision of ['no_match', 'inconclusive'] as const) {
      const d = evaluate(policy, opening, ok({ evidence: { ...ev, faceMatch: { score: 0.2, decision } } }), NOW);
      expect(codes(d)).toEqual(['face_match_required']);
      expect(!d.allowed && d.reasons[0]!.message).toContain(decision);
    }
  });

  it('requires a passed liveness check', () => {
    const ev = claims().evidence;
    expect(codes(evaluate(policy, opening, ok({ evidence: { ...ev, liveness: undefined } }), NOW))).toEqual(['liveness_required']);
    for (const outcome of ['failed', 'inconclusive'] as const) {
      expect(codes(evaluate(policy, opening, ok({ evidence: { ...ev, liveness: { outcome } } }), NOW))).toEqual(['liveness_required']);
    }
  });

  it('requires a captured document', () => {
    const ev = claims().evidence;
    expect(codes(evaluate(policy, opening, ok({ evidence: { ...ev, document: undefined } }), NOW))).toEqual(['document_required']);
    expect(codes(evaluate(policy, opening, ok({ evidence: { ...ev, document: { captured: false } } }), NOW))).toEqual(['document_required']);
  });

  it('requires a recording', () => {
    const { recording: _r, ...ev } = claims().evidence;
    expect(codes(evaluate(policy, opening, ok({ evidence: ev }), NOW))).toEqual(['recording_required']);
  });

  it('requires the one-time code where the policy asks for it', () => {
    const ev = claims().evidence;
    const { oneTimeCode: _o, ...without } = ev;
    expect(codes(evaluate(policy, opening, ok({ evidence: without }), NOW))).toEqual(['one_time_code_required']);
    expect(codes(evaluate(policy, opening, ok({ evidence: { ...ev, oneTimeCode: { result: 'locked', attempts: 5 } } }), NOW))).toEqual(['one_time_code_required']);
    // large_transfer does not ask for it.
    expect(codes(evaluate(policy, transfer('10'), ok({ evidence: without }), NOW))).toEqual([]);
  });

  it('does not require what the policy does not ask for', () => {
    // large_transfer needs no document and no recording.
    expect(codes(evaluate(policy, transfer('10'), ok({ evidence: { faceMatch: { score: 0.9, decision: 'match' }, liveness: { outcome: 'passed' } } }), NOW))).toEqual([]);
  });

  it('refuses an unknown transaction type (and still says what is wrong with the record)', () => {
    expect(codes(evaluate(policy, { transactionType: 'toString', customerRef: 'CUST-0001' }, ok(), NOW))).toEqual(['transaction_type_unknown']);
    expect(codes(evaluate(policy, { transactionType: 'nope', customerRef: 'CUST-0001' }, { ok: false, problem: { kind: 'claims', message: 'x' } }, NOW))).toEqual([
      'record_invalid',
      'transaction_type_unknown',
    ]);
  });
});

describe('evaluate: amounts, currencies and dual control', () => {
  it('requires an amount and a currency where the type has a required amount', () => {
    const base = { transactionType: 'large_transfer', customerRef: 'CUST-0001' };
    expect(codes(evaluate(policy, base, ok(), NOW))).toEqual(['amount_missing', 'currency_missing']);
    expect(codes(evaluate(policy, { ...base, amount: '10' }, ok(), NOW))).toEqual(['currency_missing']);
    expect(codes(evaluate(policy, { ...base, currency: 'EUR' }, ok(), NOW))).toEqual(['amount_missing']);
  });

  it('refuses a currency the type does not accept', () => {
    const d = evaluate(policy, transfer('10', 'USD'), ok(), NOW);
    expect(codes(d)).toEqual(['currency_not_allowed']);
    expect(!d.allowed && d.reasons[0]!.message).toContain('EUR, CHF');
  });

  it('refuses an amount for a type without one', () => {
    expect(codes(evaluate(policy, { ...opening, amount: '10', currency: 'EUR' }, ok(), NOW))).toEqual(['amount_not_allowed']);
    expect(codes(evaluate(policy, { ...opening, currency: 'EUR' }, ok(), NOW))).toEqual(['amount_not_allowed']);
  });

  it('takes an optional amount, but then with its currency', () => {
    const rec = ok({ businessType: 'consultation', evidence: {}, supervisorId: undefined, tellerScope: 'consult_only' });
    const base = { transactionType: 'optional_amount', customerRef: 'CUST-0001' };
    expect(codes(evaluate(policy, base, rec, NOW))).toEqual([]);
    expect(codes(evaluate(policy, { ...base, amount: '1', currency: 'EUR' }, rec, NOW))).toEqual([]);
    expect(codes(evaluate(policy, { ...base, amount: '1' }, rec, NOW))).toEqual(['currency_missing']);
    expect(codes(evaluate(policy, { ...base, currency: 'EUR' }, rec, NOW))).toEqual(['amount_missing']);
  });

  it('needs dual control strictly above the threshold of the currency', () => {
    const solo = ok({ supervisorId: undefined });
    expect(evaluate(policy, transfer('100000'), solo, NOW)).toEqual({ allowed: true, dualControl: false });
    expect(evaluate(policy, transfer('100000.00'), solo, NOW)).toEqual({ allowed: true, dualControl: false });
    const above = evaluate(policy, transfer('100000.0001'), solo, NOW);
    expect(codes(above)).toEqual(['dual_control_missing']);
    expect(!above.allowed && above.reasons[0]!.message).toContain('above 100000 EUR');
    expect(evaluate(policy, transfer('100000.0001'), ok(), NOW)).toEqual({ allowed: true, dualControl: true });
    // CHF has its own threshold (90000.50).
    expect(evaluate(policy, transfer('90000.50', 'CHF'), solo, NOW).allowed).toBe(true);
    expect(codes(evaluate(policy, transfer('90000.51', 'CHF'), solo, NOW))).toEqual(['dual_control_missing']);
  });

  it('needs dual control always where the policy says so, by a second person', () => {
    expect(codes(evaluate(policy, opening, ok({ supervisorId: undefined }), NOW))).toEqual(['dual_control_missing']);
    const same = evaluate(policy, opening, ok({ supervisorId: 't-alice' }), NOW);
    expect(codes(same)).toEqual(['dual_control_missing']);
    expect(!same.allowed && same.reasons[0]!.message).toContain('same person');
  });

  it("needs the teller's approval scope to be one the type lists", () => {
    expect(codes(evaluate(policy, opening, ok({ tellerScope: 'account_queries' }), NOW))).toEqual(['approver_scope_not_allowed']);
    const d = evaluate(policy, opening, ok({ tellerScope: 'consult_only' }), NOW);
    expect(!d.allowed && d.reasons[0]!.message).toBe('the teller\'s approval scope consult_only does not cover corporate_account_opening (needs full_service)');
    // The list is exact, not a hierarchy: optional_amount names consult_only alone.
    const consult = { transactionType: 'optional_amount', customerRef: 'CUST-0001' };
    const rec = { businessType: 'consultation', evidence: {}, supervisorId: undefined };
    expect(codes(evaluate(policy, consult, ok({ ...rec, tellerScope: 'consult_only' }), NOW))).toEqual([]);
    expect(codes(evaluate(policy, consult, ok({ ...rec, tellerScope: 'full_service' }), NOW))).toEqual(['approver_scope_not_allowed']);
  });

  it('refuses a record that names no scope (issued before approval scopes)', () => {
    const d = evaluate(policy, opening, ok({ tellerScope: undefined }), NOW);
    expect(codes(d)).toEqual(['approver_scope_not_allowed']);
    expect(!d.allowed && d.reasons[0]!.message).toContain('names no approval scope');
  });

  it('needs a named teller', () => {
    expect(codes(evaluate(policy, opening, ok({ tellerId: '' }), NOW))).toEqual(['approver_missing']);
  });

  it('compares amounts as decimals, not floats', () => {
    expect(parseAmount('0.1') + parseAmount('0.2')).toBe(parseAmount('0.3'));
    expect(parseAmount('100000')).toBe(parseAmount('100000.0000'));
    expect(parseAmount('999999999999999.9999') > parseAmount('999999999999999.9998')).toBe(true);
  });
});

describe('evaluate: every failing rule at once', () => {
  it('lists them all, in a stable order', () => {
    const worst = claims({
      decision: 'rejected',
      businessType: 'consultation',
      customerRef: 'CUST-0002',
      tellerId: 't-alice',
      tellerScope: 'consult_only',
      supervisorId: undefined,
      evidence: { faceMatch: { score: 0.1, decision: 'no_match' }, liveness: { outcome: 'failed' }, document: { captured: false } },
      iat: NOW_S - 7200,
    });
    const d = evaluate(policy, opening, { ok: true, claims: worst }, NOW);
    expect(codes(d)).toEqual([
      'decision_not_approved',
      'business_type_not_allowed',
      'customer_mismatch',
      'face_match_required',
      'liveness_required',
      'document_required',
      'recording_required',
      'one_time_code_required',
      'record_too_old',
      'approver_scope_not_allowed',
      'dual_control_missing',
    ]);
    const t = evaluate(policy, transfer('500000', 'USD'), { ok: true, claims: worst }, NOW);
    expect(codes(t)).toEqual([
      'decision_not_approved',
      'business_type_not_allowed',
      'customer_mismatch',
      'face_match_required',
      'liveness_required',
      'record_too_old',
      'currency_not_allowed',
      'approver_scope_not_allowed',
    ]);
  });

  it('checks the request-only rules even when the record is invalid', () => {
    const bad: RecordCheck = { ok: false, problem: { kind: 'entry_mismatch', message: 'claims differ' } };
    expect(codes(evaluate(policy, { transactionType: 'large_transfer', customerRef: 'CUST-0001', currency: 'USD' }, bad, NOW))).toEqual([
      'record_invalid',
      'amount_missing',
      'currency_not_allowed',
    ]);
  });

  it('uses only declared codes, and never mutates its inputs', () => {
    const rec = ok({ decision: 'rejected' });
    const frozen = JSON.stringify(rec);
    const d = evaluate(policy, transfer('1', 'JPY'), rec, NOW);
    expect(JSON.stringify(rec)).toBe(frozen);
    for (const c of codes(d)) expect(DENIAL_CODES).toContain(c);
  });
});
