/**
 * What a verification record says: its JWT claims, shared by issuance (records.ts) and
 * verification (verify.ts). Portable.
 */
import { z } from 'zod';

/** JWS `typ` of a verification record. */
export const RECORD_TYP = 'vt-record+jwt';
/** Ledger entry type of a record's own entry. */
export const RECORD_ENTRY_TYPE = 'record.issued';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'expected a lowercase hex SHA-256');
const id = z.string().min(1).max(128).regex(/^[\x21-\x7e]+$/, 'expected printable ASCII without spaces');

/** Evidence summary: every part optional until the identity work lands; no raw images. */
export const evidenceSummarySchema = z
  .object({
    faceMatch: z
      .object({
        score: z.number().min(0).max(1),
        decision: z.enum(['match', 'no_match', 'inconclusive']),
        threshold: z.number().min(0).max(1).optional(),
        model: z.string().min(1).max(64).optional(),
      })
      .strict()
      .optional(),
    liveness: z
      .object({
        outcome: z.enum(['passed', 'failed', 'inconclusive']),
        challenges: z.number().int().min(0).max(100).optional(),
      })
      .strict()
      .optional(),
    document: z
      .object({
        captured: z.boolean(),
        type: z.string().min(1).max(64).optional(),
        imageSha256: sha256Hex.optional(),
      })
      .strict()
      .optional(),
    /** The call's recording (its `recording.stored` entry): the blob's hash, size, duration and time range (epoch ms). */
    recording: z
      .object({
        sha256: sha256Hex,
        bytes: z.number().int().positive(),
        durationMs: z.number().int().nonnegative(),
        startedAt: z.number().int().nonnegative(),
        endedAt: z.number().int().nonnegative(),
      })
      .strict()
      .optional(),
    /** The one-time code the bank delivered: whether the customer typed it (never the code). */
    oneTimeCode: z
      .object({ result: z.enum(['verified', 'wrong', 'expired', 'locked', 'no_code']), attempts: z.number().int().min(0).max(100) })
      .strict()
      .optional(),
  })
  .strict();
export type EvidenceSummary = z.infer<typeof evidenceSummarySchema>;

/** What the server passes to issueRecord when a session is decided. */
export const recordInputSchema = z
  .object({
    decision: z.enum(['approved', 'rejected']),
    reason: z.string().min(1).max(500).optional(),
    sessionId: id,
    customerRef: id,
    businessType: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/),
    tellerId: id,
    /** The approving teller's business scope (consult_only, account_queries, full_service). */
    tellerScope: z.string().regex(/^[a-z][a-z_]{0,31}$/).optional(),
    /** The supervisor who co-signed (or refused), when dual control applied. */
    supervisorId: id.optional(),
    /** Each person's decision as its own ledger entry (the teller's `decision.made`, the supervisor's `decision.cosigned`/`decision.cosign_refused`). */
    approvals: z
      .array(
        z
          .object({
            role: z.enum(['teller', 'supervisor']),
            staffId: id,
            decision: z.enum(['approved', 'rejected', 'cosigned', 'refused']),
            at: z.number().int().nonnegative(),
            entryIndex: z.number().int().nonnegative(),
          })
          .strict(),
      )
      .max(4)
      .optional(),
    evidence: evidenceSummarySchema,
  })
  .strict();
export type RecordInput = z.infer<typeof recordInputSchema>;

/** Claims committed in the record's ledger entry: everything but the entry's own index. */
export const recordBaseClaimsSchema = recordInputSchema.extend({
  iss: z.string().min(1),
  sub: id,
  jti: z.string().uuid(),
  iat: z.number().int().nonnegative(),
  exp: z.number().int().positive(),
});
export type RecordBaseClaims = z.infer<typeof recordBaseClaimsSchema>;

export const recordClaimsSchema = recordBaseClaimsSchema.extend({ ledgerIndex: z.number().int().nonnegative() }).strict();
export type RecordClaims = z.infer<typeof recordClaimsSchema>;

/** The record as handed out and as `videoteller verify-record FILE` reads it. */
export const recordBundleSchema = z.object({
  format: z.literal('videoteller-record'),
  version: z.literal(1),
  /** JWS compact serialization, EdDSA, `kid` in the header. */
  jws: z.string().min(1).max(64 * 1024),
  /** The record's own ledger entry, canonical JSON. */
  entry: z.string().min(1).max(64 * 1024),
  index: z.number().int().nonnegative(),
  /** RFC 9162 inclusion proof of the entry in the checkpoint's tree, base64 hashes. */
  inclusionProof: z.array(z.string()).max(64),
  /** The signed checkpoint (C2SP tlog-checkpoint note) the proof leads to. */
  checkpoint: z.string().min(1).max(16 * 1024),
});
export type RecordBundle = z.infer<typeof recordBundleSchema>;
