import type { z } from 'zod';
import type { EvidenceSink } from '../src/evidence.ts';
import type { Logger } from '../src/logger.ts';
import type { SessionRating, StateStore } from '../src/store/types.ts';
import { SignalingError } from './handlers.ts';
import type { RatingResult, ratingSubmitSchema } from './protocol.ts';

export type RatingMessage = z.infer<typeof ratingSubmitSchema>;

/** Store index of the sessions that carry a rating (shared by every node; the board reads it). */
export const RATINGS_INDEX = 'ratings';

export interface RatingDeps {
  store: StateStore;
  evidence: EvidenceSink;
  log: Logger;
  now?: () => number;
}

/**
 * The customer rates the call they had, once, after it ended. The `customer.rating` entry is
 * written to the ledger first (nothing is acknowledged before it is durable), then the rating is
 * kept on the session, where the board's per-teller satisfaction reads it. A per-session lock
 * (across nodes) makes "once" hold against two pages or a double tap racing.
 */
export async function rateCall(deps: RatingDeps, sessionId: string, msg: RatingMessage): Promise<RatingResult> {
  const now = deps.now ?? Date.now;
  return deps.store.withLock(`rating:${sessionId}`, async () => {
    const s = await deps.store.getSession(sessionId);
    if (!s) throw new SignalingError('not_found', 'no such session');
    if (s.rating) throw new SignalingError('invalid_state', 'this call was already rated');
    if (s.state !== 'ended') throw new SignalingError('invalid_state', `a call can be rated once it has ended (the session is ${s.state})`);
    if (!s.answeredAt || !s.tellerId) throw new SignalingError('invalid_state', 'there was no call with a teller to rate');
    const comment = msg.comment ? msg.comment : undefined;
    const { index } = await deps.evidence.append({
      sessionId,
      type: 'customer.rating',
      actor: 'customer',
      payload: { score: msg.score, tellerId: s.tellerId, ...(comment ? { comment } : {}) },
    });
    const rating: SessionRating = { score: msg.score, ...(comment ? { comment } : {}), at: now(), entryIndex: index };
    await deps.store.updateSession(sessionId, (x) => {
      if (x.rating) throw new SignalingError('invalid_state', 'this call was already rated');
      return { ...x, rating };
    });
    await deps.store.addToIndex(RATINGS_INDEX, sessionId);
    // The score only: the comment is the customer's own words.
    deps.log.info({ sessionId, score: msg.score, withComment: comment !== undefined, entryIndex: index }, 'customer rated the call');
    return { sessionId, score: msg.score, ledgerIndex: index };
  });
}
