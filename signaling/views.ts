import type { OfferRecord, SessionRecord, TellerRecord } from '../src/store/types.ts';
import type { Offer, TellerInfo } from './protocol.ts';

/** What the pages see of stored records: never token hashes or the customer reference. */
export function toTellerInfo(t: TellerRecord): TellerInfo {
  return {
    tellerId: t.id,
    displayName: t.displayName,
    state: t.state,
    skills: t.skills,
    ...(t.wrapUpUntil ? { wrapUpUntil: t.wrapUpUntil } : {}),
  };
}

export function toOffer(o: OfferRecord, s: SessionRecord, now = Date.now()): Offer {
  return {
    offerId: o.id,
    sessionId: s.id,
    businessType: s.businessType,
    language: s.language,
    priority: s.priority,
    waitedMs: Math.max(0, now - (s.queuedAt ?? s.createdAt)),
    expiresAt: o.expiresAt,
  };
}
