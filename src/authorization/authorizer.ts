/**
 * Authorizing a transaction with a verification record: verify the record with the server's own
 * keys and origin, check it is unspent, evaluate the policy (decide.ts), append the answer to
 * the ledger, and sign the authorization (JWS, EdDSA, the ledger's key ring).
 *
 * Replay: a record authorizes one transaction. "Spent" is derived from the ledger itself: a
 * record is spent when its session has an `authorization.granted` entry naming its jti. The grant
 * and the spend are then one and the same durable write (an append resolves after fdatasync),
 * so there is no second store that could disagree with the ledger after a crash (spent without a
 * logged grant, or granted but not marked spent), nothing more to back up, and it survives a
 * restart because the ledger does (the file ledger rebuilds its per-session index on open).
 * Check-then-append runs under a per-record lock, so two concurrent requests with one record
 * cannot both pass. The file ledger allows one writer process (its LOCK file), so an in-process
 * lock suffices; a shared (PostgreSQL) ledger will need the check and the append in one
 * transaction (a unique index on the granted record jti).
 */
import { randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import { z } from 'zod';
import type { KeyRing } from '../ledger/keyring.ts';
import { nodeEd25519Verify, nodeSha256 } from '../ledger/node-crypto.ts';
import { verifyRecord, type Ledger, type RecordBundle, type RecordClaims } from '../ledger/index.ts';
import { maskId } from '../logger.ts';
import { evaluate, type AuthorizationRequest, type DenialReason, type RecordCheck } from './decide.ts';
import { KeyedMutex } from './keyed-mutex.ts';
import type { LoadedPolicy } from './policy.ts';

/** JWS `typ` of an authorization. */
export const AUTHORIZATION_TYP = 'vt-authorization+jwt';
export const GRANTED_ENTRY_TYPE = 'authorization.granted';
export const DENIED_ENTRY_TYPE = 'authorization.denied';
/** Ledger session id of a denial whose record names no usable session. */
export const UNATTRIBUTED_SESSION = 'authorization-unattributed';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The claims of a signed authorization. */
export const authorizationClaimsSchema = z
  .object({
    iss: z.string().min(1),
    /** The session whose record authorized the transaction (also `sessionId`). */
    sub: z.string(),
    jti: z.string().uuid(),
    iat: z.number().int().nonnegative(),
    transactionType: z.string(),
    amount: z.string().optional(),
    currency: z.string().optional(),
    customerRef: z.string(),
    recordJti: z.string().uuid(),
    sessionId: z.string(),
    tellerId: z.string(),
    /** The approving teller's approval scope. */
    tellerScope: z.string().optional(),
    supervisorId: z.string().optional(),
    /** Whether the policy required dual control for this transaction. */
    dualControl: z.boolean(),
    /** SHA-256 of the policy file that decided. */
    policySha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** Index of this authorization's own `authorization.granted` ledger entry. */
    ledgerIndex: z.number().int().nonnegative(),
  })
  .strict();
export type AuthorizationClaims = z.infer<typeof authorizationClaimsSchema>;

export type AuthorizationAnswer =
  | { authorized: true; authorization: string; claims: AuthorizationClaims; ledgerIndex: number }
  | { authorized: false; reasons: DenialReason[]; ledgerIndex: number; sessionId: string; recordJti: string | null };

export interface AuthorizerDeps {
  ledger: Pick<Ledger, 'origin' | 'append' | 'entriesOf'>;
  keyRing: Pick<KeyRing, 'jwks' | 'signJwt' | 'activeKid'>;
  policy: LoadedPolicy;
  now?: () => Date;
}

export class Authorizer {
  private readonly locks = new KeyedMutex();

  constructor(private readonly deps: AuthorizerDeps) {}

  /** Decides, logs and (if granted) signs. `actor` names the caller in the ledger (`api:<key id>`). */
  async authorize(request: AuthorizationRequest, record: RecordBundle, actor: string): Promise<AuthorizationAnswer> {
    const now = this.deps.now?.() ?? new Date();
    const check = await this.check(record, now);
    if (!check.claims) {
      // Nothing in the record can be trusted: log the denial under the session it claims, marked unverified.
      const claimed = unverifiedIds(record.jws);
      const decision = evaluate(this.deps.policy.policy, request, check, now);
      const reasons = decision.allowed ? [] : decision.reasons;
      return this.deny(request, reasons, { sessionId: claimed.sessionId ?? UNATTRIBUTED_SESSION, recordJti: claimed.jti ?? null, verified: false, customerRefMatches: false }, actor);
    }
    const claims = check.claims;
    return this.locks.run(claims.jti, async () => {
      const decision = evaluate(this.deps.policy.policy, request, check, now);
      const reasons = decision.allowed ? [] : [...decision.reasons];
      if (await this.isSpent(claims)) {
        const at = reasons[0]?.code === 'record_invalid' || reasons[0]?.code === 'record_expired' ? 1 : 0;
        reasons.splice(at, 0, { code: 'record_already_used', message: 'this record has already authorized a transaction; a record authorizes one transaction only' });
      }
      const attribution = { sessionId: claims.sessionId, recordJti: claims.jti, verified: true, customerRefMatches: claims.customerRef === request.customerRef };
      if (reasons.length > 0) return this.deny(request, reasons, attribution, actor);
      return this.grant(request, claims, decision.dualControl, actor);
    });
  }

  /** verifyRecord with the server's keys and origin; an expired record is re-checked within its lifetime to authenticate its claims. */
  private async check(record: RecordBundle, now: Date): Promise<RecordCheck> {
    const opts = { keys: this.deps.keyRing.jwks(), origin: this.deps.ledger.origin, sha256: nodeSha256, ed25519Verify: nodeEd25519Verify };
    const res = await verifyRecord(record, { ...opts, now });
    if (res.ok || res.problem.kind !== 'expired') return res;
    let exp: unknown;
    try {
      exp = decodeJwt(record.jws).exp;
    } catch {
      return res;
    }
    if (typeof exp !== 'number' || !Number.isSafeInteger(exp)) return res;
    const within = await verifyRecord(record, { ...opts, now: new Date((exp - 1) * 1000) });
    return within.ok ? { ok: false, problem: res.problem, claims: within.claims } : res;
  }

  private async isSpent(claims: RecordClaims): Promise<boolean> {
    const entries = await this.deps.ledger.entriesOf(claims.sessionId);
    return entries.some((e) => e.type === GRANTED_ENTRY_TYPE && e.payload.recordJti === claims.jti);
  }

  private async grant(request: AuthorizationRequest, record: RecordClaims, dualControl: boolean, actor: string): Promise<AuthorizationAnswer> {
    const now = this.deps.now?.() ?? new Date();
    const base: Omit<AuthorizationClaims, 'ledgerIndex'> = {
      iss: this.deps.ledger.origin,
      sub: record.sessionId,
      jti: randomUUID(),
      iat: Math.floor(now.getTime() / 1000),
      transactionType: request.transactionType,
      ...(request.amount !== undefined ? { amount: request.amount } : {}),
      ...(request.currency !== undefined ? { currency: request.currency } : {}),
      customerRef: record.customerRef,
      recordJti: record.jti,
      sessionId: record.sessionId,
      tellerId: record.tellerId,
      ...(record.tellerScope !== undefined ? { tellerScope: record.tellerScope } : {}),
      ...(record.supervisorId !== undefined ? { supervisorId: record.supervisorId } : {}),
      dualControl,
      policySha256: this.deps.policy.sha256,
    };
    const kid = this.deps.keyRing.activeKid;
    // The entry first (it is the spend), then the JWS naming its index, as records do.
    const appended = await this.deps.ledger.append({
      sessionId: record.sessionId,
      type: GRANTED_ENTRY_TYPE,
      actor,
      payload: { recordJti: record.jti, transactionType: request.transactionType, kid, authorization: base },
    });
    const claims: AuthorizationClaims = { ...base, ledgerIndex: appended.index };
    const signed = await this.deps.keyRing.signJwt(claims, AUTHORIZATION_TYP);
    if (signed.kid !== kid) throw new Error(`the signing key rotated while authorization ${base.jti} was issued (its ledger entry names ${kid})`);
    return { authorized: true, authorization: signed.jws, claims, ledgerIndex: appended.index };
  }

  private async deny(
    request: AuthorizationRequest,
    reasons: DenialReason[],
    at: { sessionId: string; recordJti: string | null; verified: boolean; customerRefMatches: boolean },
    actor: string,
  ): Promise<AuthorizationAnswer> {
    const appended = await this.deps.ledger.append({
      sessionId: at.sessionId,
      type: DENIED_ENTRY_TYPE,
      actor,
      payload: {
        recordJti: at.recordJti,
        recordVerified: at.verified,
        transactionType: request.transactionType,
        ...(request.amount !== undefined ? { amount: request.amount } : {}),
        ...(request.currency !== undefined ? { currency: request.currency } : {}),
        // Only the reference the record's own evidence holds goes in whole; any other is masked.
        customerRef: at.customerRefMatches ? request.customerRef : maskId(request.customerRef),
        reasons,
        policySha256: this.deps.policy.sha256,
      },
    });
    return { authorized: false, reasons, ledgerIndex: appended.index, sessionId: at.sessionId, recordJti: at.recordJti };
  }
}

/** The session id and jti an unverifiable record claims, if they look like ours (UUIDs). */
function unverifiedIds(jws: string): { sessionId?: string; jti?: string } {
  try {
    const p = decodeJwt(jws);
    const sessionId = typeof p.sub === 'string' && UUID_RE.test(p.sub) ? p.sub : undefined;
    const jti = typeof p.jti === 'string' && UUID_RE.test(p.jti) ? p.jti : undefined;
    return { ...(sessionId ? { sessionId } : {}), ...(jti ? { jti } : {}) };
  } catch {
    return {};
  }
}
