/**
 * Verification records: when a session is decided, the server appends the record's own ledger
 * entry, signs the record (JWS, EdDSA, kid) naming that entry's index, and returns it with an
 * inclusion proof to a signed checkpoint. Anyone with the JWKS can check all of it offline
 * (verifyRecord in verify.ts, `videoteller verify-record`).
 */
import { randomUUID } from 'node:crypto';
import { toBase64 } from './bytes.ts';
import { EntryInputError } from './entry.ts';
import type { KeyRing } from './keyring.ts';
import { RECORD_ENTRY_TYPE, RECORD_TYP, recordInputSchema, type RecordBaseClaims, type RecordBundle, type RecordClaims, type RecordInput } from './record-claims.ts';
import { LedgerError, type Ledger } from './types.ts';

export type { RecordBundle, RecordClaims, RecordInput };

export interface IssuedRecord extends RecordBundle {
  claims: RecordClaims;
  kid: string;
}

export interface RecordIssuerDeps {
  ledger: Ledger;
  keyRing: KeyRing;
  /** Record lifetime (RECORD_TTL_S). */
  ttlSeconds: number;
  now?: () => Date;
}

/**
 * Issues a verification record. Resolves once its entry is durable and a checkpoint covering it
 * is signed. Throws EntryInputError for input that does not fit the record schema.
 */
export async function issueRecord(deps: RecordIssuerDeps, input: RecordInput): Promise<IssuedRecord> {
  const parsed = recordInputSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new EntryInputError(issue.path.join('.') || 'record', issue.message);
  }
  if (!Number.isSafeInteger(deps.ttlSeconds) || deps.ttlSeconds <= 0) throw new RangeError('ttlSeconds must be a positive integer');
  const iat = Math.floor((deps.now?.() ?? new Date()).getTime() / 1000);
  const base: RecordBaseClaims = {
    ...parsed.data,
    iss: deps.ledger.origin,
    sub: parsed.data.sessionId,
    jti: randomUUID(),
    iat,
    exp: iat + deps.ttlSeconds,
  };
  const kid = deps.keyRing.activeKid;
  const appended = await deps.ledger.append({
    sessionId: base.sessionId,
    type: RECORD_ENTRY_TYPE,
    actor: base.tellerId,
    payload: { kid, record: base },
  });
  const claims: RecordClaims = { ...base, ledgerIndex: appended.index };
  const signed = await deps.keyRing.signJwt(claims, RECORD_TYP);
  if (signed.kid !== kid) {
    // The key rotated between the entry and the signature: the entry names the old key.
    throw new LedgerError('failed', `the signing key rotated while record ${base.jti} was issued; issue it again`);
  }
  const checkpoint = await deps.ledger.checkpoint();
  const proof = await deps.ledger.inclusionProof(appended.index, checkpoint.size);
  const entry = new TextDecoder().decode(
    (await deps.ledger.getEntries(appended.index, appended.index + 1))[0]!.bytes,
  );
  return {
    format: 'videoteller-record',
    version: 1,
    jws: signed.jws,
    entry,
    index: appended.index,
    inclusionProof: proof.map(toBase64),
    checkpoint: checkpoint.note,
    claims,
    kid,
  };
}
