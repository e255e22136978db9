/**
 * The sessions as the ledger tells them, for the compliance list: one summary per session id,
 * built from the ledger's entries and kept up to date incrementally (each refresh reads only the
 * entries appended since the last). The ledger is the source of truth: the session store forgets
 * sessions (memory store on restart, TTLs), the ledger does not, and a PostgreSQL ledger serves
 * the same entries. Only the `Ledger` interface is used (size, getEntries).
 *
 * Memory: a small summary and the list of entry indexes per session (8 bytes per entry).
 * An entry the ledger cannot read back (corrupt on disk) is skipped and counted: the compliance
 * view of that session then shows it as unreadable, and `videoteller verify` finds it.
 */
import { blobNamedBy, type BlobKind } from '../ledger/bundle.ts';
import { LedgerError, type Ledger, type LedgerEntry, type StoredEntry } from '../ledger/types.ts';
import type { Logger } from '../logger.ts';

export interface SessionRecordingInfo {
  sha256: string;
  bytes: number | null;
  durationMs: number | null;
  /** Epoch ms of the recording's time 0. */
  startedAt: number | null;
  mimeType: string;
  container: string | null;
  tracks: { participant: string; kind: string; codec: string; startMs: number }[];
  entryIndex: number;
}

export interface SessionSummary {
  sessionId: string;
  /** Ledger time of `session.created` (else of the first entry), ISO 8601. */
  createdAt: string;
  createdMs: number;
  businessType: string | null;
  language: string | null;
  customerRef: string | null;
  /** Tellers who took a call in the session (`call.started`), in order. */
  tellers: string[];
  state: string | null;
  decision: 'approved' | 'rejected' | null;
  decisionReason: string | null;
  decidedBy: string | null;
  decidedAt: string | null;
  /** Dual control: the supervisor's answer to the teller's approval. */
  cosign: { supervisorId: string; verdict: string; entryIndex: number } | null;
  record: { index: number; jti: string | null; kid: string | null } | null;
  recordings: SessionRecordingInfo[];
  recordingFailures: { code: string; entryIndex: number }[];
  blobs: { kind: BlobKind; sha256: string; entryIndex: number }[];
  entries: number;
  lastEntryAt: string;
}

export interface SessionFilter {
  /** createdMs >= from */
  from?: number;
  /** createdMs < to */
  to?: number;
  teller?: string;
  decision?: 'approved' | 'rejected' | 'none';
  businessType?: string;
}

interface IndexedSession {
  summary: SessionSummary;
  indexes: number[];
}

const BATCH = 1000;

/**
 * An entry whose stored bytes are damaged: the ledger says so (`corrupt`: CRC, framing), or the
 * bytes no longer parse (damage that kept the CRC right). Anything else (closed, I/O) is not.
 */
export function isEntryDamage(err: unknown): boolean {
  return (err instanceof LedgerError && err.code === 'corrupt') || err instanceof SyntaxError;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export class SessionIndex {
  private readonly sessions = new Map<string, IndexedSession>();
  private indexed = 0;
  private refreshing: Promise<void> | undefined;
  /** Entries the ledger could not read back while indexing. */
  readonly unreadable: number[] = [];

  constructor(
    private readonly ledger: Pick<Ledger, 'size' | 'getEntries'>,
    private readonly log?: Logger,
  ) {}

  /** Entries indexed so far (the ledger size at the last refresh). */
  get size(): number {
    return this.indexed;
  }

  /** Reads the entries appended since the last refresh. Concurrent callers share one pass. */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = this.catchUp().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async catchUp(): Promise<void> {
    const target = this.ledger.size;
    while (this.indexed < target) {
      const start = this.indexed;
      const end = Math.min(target, start + BATCH);
      let batch: StoredEntry[];
      try {
        batch = await this.ledger.getEntries(start, end);
      } catch (err) {
        if (!isEntryDamage(err)) throw err;
        // One damaged entry must not hide the rest: read the batch one by one.
        batch = [];
        for (let i = start; i < end; i++) {
          try {
            batch.push(...(await this.ledger.getEntries(i, i + 1)));
          } catch (e) {
            if (!isEntryDamage(e)) throw e;
            this.unreadable.push(i);
            this.log?.error({ err: e, index: i }, 'compliance index: a ledger entry cannot be read back');
          }
        }
      }
      for (const s of batch) this.add(s.index, s.entry);
      this.indexed = end;
    }
  }

  private add(index: number, e: LedgerEntry): void {
    let s = this.sessions.get(e.sessionId);
    if (!s) {
      s = {
        indexes: [],
        summary: {
          sessionId: e.sessionId,
          createdAt: e.time,
          createdMs: Date.parse(e.time),
          businessType: null,
          language: null,
          customerRef: null,
          tellers: [],
          state: null,
          decision: null,
          decisionReason: null,
          decidedBy: null,
          decidedAt: null,
          cosign: null,
          record: null,
          recordings: [],
          recordingFailures: [],
          blobs: [],
          entries: 0,
          lastEntryAt: e.time,
        },
      };
      this.sessions.set(e.sessionId, s);
    }
    s.indexes.push(index);
    const sum = s.summary;
    sum.entries++;
    sum.lastEntryAt = e.time;
    const p = e.payload as Record<string, unknown>;
    switch (e.type) {
      case 'session.created':
        sum.createdAt = e.time;
        sum.createdMs = Date.parse(e.time);
        sum.businessType = str(p.businessType);
        sum.language = str(p.language);
        sum.customerRef = str(p.customerRef);
        break;
      case 'session.transition':
        sum.state = str(p.to);
        break;
      case 'call.started': {
        const t = str(p.tellerId) ?? e.actor;
        if (!sum.tellers.includes(t)) sum.tellers.push(t);
        break;
      }
      case 'decision.made': {
        const d = str(p.decision);
        if (d === 'approved' || d === 'rejected') sum.decision = d;
        sum.decisionReason = str(p.reason);
        sum.decidedBy = e.actor;
        sum.decidedAt = e.time;
        break;
      }
      case 'decision.cosigned':
      case 'decision.cosign_refused':
        sum.cosign = { supervisorId: e.actor, verdict: str(p.verdict) ?? (e.type === 'decision.cosigned' ? 'cosign' : 'refuse'), entryIndex: index };
        break;
      case 'record.issued': {
        const rec = (p.record ?? {}) as Record<string, unknown>;
        sum.record = { index, jti: str(rec.jti), kid: str(p.kid) };
        const d = str(rec.decision);
        // The record is what the bank relies on: it settles the decision if the entries disagree.
        if (d === 'approved' || d === 'rejected') sum.decision = d;
        sum.decidedBy ??= e.actor;
        break;
      }
      case 'recording.stored':
        if (typeof p.sha256 === 'string') {
          sum.recordings.push({
            sha256: p.sha256,
            bytes: num(p.bytes),
            durationMs: num(p.durationMs),
            startedAt: num(p.startedAt),
            mimeType: str(p.mimeType) ?? 'video/webm',
            container: str(p.container),
            tracks: Array.isArray(p.tracks)
              ? (p.tracks as Record<string, unknown>[]).map((t) => ({ participant: String(t?.participant), kind: String(t?.kind), codec: String(t?.codec), startMs: num(t?.startMs) ?? 0 }))
              : [],
            entryIndex: index,
          });
        }
        break;
      case 'recording.failed':
        sum.recordingFailures.push({ code: str(p.code) ?? 'unknown', entryIndex: index });
        break;
      default:
        break;
    }
    const blob = blobNamedBy(e);
    if (blob && !sum.blobs.some((b) => b.sha256 === blob.sha256)) sum.blobs.push({ ...blob, entryIndex: index });
  }

  get(sessionId: string): { summary: SessionSummary; indexes: readonly number[] } | undefined {
    return this.sessions.get(sessionId);
  }

  /** Sessions matching the filter, newest first (by creation, then by first entry). */
  query(filter: SessionFilter, page: { offset: number; limit: number }): { total: number; sessions: SessionSummary[] } {
    const matches: IndexedSession[] = [];
    for (const s of this.sessions.values()) {
      const m = s.summary;
      if (filter.from !== undefined && !(m.createdMs >= filter.from)) continue;
      if (filter.to !== undefined && !(m.createdMs < filter.to)) continue;
      if (filter.teller !== undefined && !m.tellers.includes(filter.teller) && m.decidedBy !== filter.teller) continue;
      if (filter.decision !== undefined && (filter.decision === 'none' ? m.decision !== null : m.decision !== filter.decision)) continue;
      if (filter.businessType !== undefined && m.businessType !== filter.businessType) continue;
      matches.push(s);
    }
    matches.sort((a, b) => b.summary.createdMs - a.summary.createdMs || b.indexes[0]! - a.indexes[0]!);
    return { total: matches.length, sessions: matches.slice(page.offset, page.offset + page.limit).map((s) => s.summary) };
  }
}
