import { z } from 'zod';
import { businessTypeSchema, languageSchema, offerStateSchema, sessionStateSchema, tellerStateSchema } from '../../signaling/protocol.ts';
import { staffSkillsSchema } from '../auth/staff-directory.ts';
import { StoreDataError, type OfferRecord, type SessionDecision, type SessionRecord, type TellerRecord } from './types.ts';

/**
 * Shapes of the records as a shared store (Redis) holds them. Another node, an older or newer
 * version of this server or an operator can write those keys, so what comes back is parsed like
 * any outside input. Unknown fields pass validation and are kept (the stored value is returned, not
 * zod's copy), so a field a newer version added survives a read-modify-write by an older node
 * during a rolling upgrade.
 *
 * The type guards below fail the typecheck when a record type gains or changes a field that its
 * schema does not have: add it here too. The decision is checked as an object only; its shape is
 * the decision flow's (signaling/decisions.ts) and the ledger's, which validate what they issue.
 */

const epochMs = z.number().finite();

const sessionSchema = z.object({
  id: z.string().min(1),
  businessType: businessTypeSchema,
  language: languageSchema,
  priority: z.number().int(),
  customerRef: z.string(),
  state: sessionStateSchema,
  createdAt: epochMs,
  queuedAt: epochMs.optional(),
  tokenHash: z.string().min(1),
  tokenExpiresAt: epochMs,
  tokenUsed: z.boolean(),
  resumeTokenHash: z.string().min(1).optional(),
  offerId: z.string().optional(),
  tellerId: z.string().optional(),
  callId: z.string().optional(),
  mediaNode: z.string().optional(),
  declinedBy: z.record(z.string(), z.number()),
  answeredAt: epochMs.optional(),
  endedAt: epochMs.optional(),
  endReason: z.string().optional(),
  createdBy: z.string(),
  amount: z.object({ value: z.string(), currency: z.string() }).optional(),
  decision: z.custom<SessionDecision>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'an object').optional(),
  reference: z
    .object({
      sha256: z.string(),
      descriptor: z.array(z.number()),
      detectionScore: z.number(),
      attachedAt: epochMs,
    })
    .optional(),
  rating: z
    .object({
      score: z.number().int().min(1).max(5),
      comment: z.string().optional(),
      at: epochMs,
      entryIndex: z.number().int().min(0),
    })
    .optional(),
});

const tellerSchema = z.object({
  id: z.string().min(1),
  displayName: z.string(),
  skills: staffSkillsSchema,
  state: tellerStateSchema,
  idleSince: epochMs,
  missedOffers: z.number().int(),
  offerId: z.string().optional(),
  sessionId: z.string().optional(),
  wrapUpUntil: epochMs.optional(),
});

const offerSchema = z.object({
  id: z.string().min(1),
  sessionId: z.string().min(1),
  tellerId: z.string().min(1),
  state: offerStateSchema,
  createdAt: epochMs,
  expiresAt: epochMs,
  closedAt: epochMs.optional(),
  reason: z.string().optional(),
});

// Compile-time guard: a field added to a record type without its schema fails the typecheck here.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameSession: Same<z.infer<typeof sessionSchema>, SessionRecord> = true;
const sameTeller: Same<z.infer<typeof tellerSchema>, TellerRecord> = true;
const sameOffer: Same<z.infer<typeof offerSchema>, OfferRecord> = true;
void [sameSession, sameTeller, sameOffer];

export type RecordKind = 'session' | 'teller' | 'offer';
export type RecordOf<K extends RecordKind> = K extends 'session' ? SessionRecord : K extends 'teller' ? TellerRecord : OfferRecord;

const schemas = { session: sessionSchema, teller: tellerSchema, offer: offerSchema } as const;

/**
 * Parses a stored value. The value itself is returned (not zod's rebuilt copy) so that numbers,
 * key order and unknown fields come back exactly as written.
 */
export function parseRecord<K extends RecordKind>(kind: K, id: string, raw: string): RecordOf<K> {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new StoreDataError(kind, id, 'not JSON');
  }
  const result = schemas[kind].safeParse(value);
  if (!result.success) {
    throw new StoreDataError(kind, id, result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));
  }
  if ((value as { id: string }).id !== id) throw new StoreDataError(kind, id, 'id does not match its key');
  return value as RecordOf<K>;
}
