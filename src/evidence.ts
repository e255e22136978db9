/**
 * The one way anything records evidence about a session: state transitions, offers, media
 * events, identity checks, decisions. The server backs it with the signed ledger; the append
 * resolves only once the entry is durable.
 */
export interface EvidenceEntry {
  sessionId: string;
  type: string;
  /** Staff id, "customer", or "system". */
  actor: string;
  /** Hashes, scores, decisions and states: never raw images or unmasked ID numbers. */
  payload: Record<string, unknown>;
}

export interface EvidenceSink {
  append(entry: EvidenceEntry): Promise<{ index: number }>;
}
