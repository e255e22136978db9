/**
 * The ledger as the rest of the server sees it. The `file` backend (file-ledger.ts) is the
 * embedded default; a PostgreSQL backend must pass the same conformance suite
 * (test/unit/ledger/conformance.ts).
 */
import type { EntryInput, LedgerEntry } from './entry.ts';

export type { EntryInput, LedgerEntry };

export interface AppendResult {
  index: number;
  /** RFC 6962 leaf hash: SHA-256(0x00 || canonical entry bytes). */
  leafHash: Uint8Array;
  entry: LedgerEntry;
}

export interface StoredEntry {
  index: number;
  entry: LedgerEntry;
  /** The canonical JSON bytes, as hashed into the tree. */
  bytes: Uint8Array;
  leafHash: Uint8Array;
}

export interface SignedCheckpoint {
  origin: string;
  size: number;
  rootHash: Uint8Array;
  /** The C2SP signed note (tlog-checkpoint), as stored and served. */
  note: string;
}

export type LedgerErrorCode = 'closed' | 'failed' | 'corrupt' | 'locked' | 'out_of_range' | 'config';

export class LedgerError extends Error {
  constructor(readonly code: LedgerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LedgerError';
  }
}

export interface Ledger {
  readonly origin: string;
  /** Number of durable entries (indexes 0 .. size-1). */
  readonly size: number;
  /**
   * Appends one entry. Resolves only after the entry is durable (fsync or commit); concurrent
   * appends share one fsync. Rejects with EntryInputError for input the ledger refuses, and
   * LedgerError('closed' | 'failed') when it cannot write.
   */
  append(input: EntryInput): Promise<AppendResult>;
  /** Entries [start, end); throws LedgerError('out_of_range') beyond the durable size. */
  getEntries(start: number, end: number): Promise<StoredEntry[]>;
  /** Every entry of a session, in order. */
  entriesOf(sessionId: string): Promise<LedgerEntry[]>;
  rootHash(treeSize?: number): Promise<Uint8Array>;
  /** RFC 9162 inclusion proof of entry `index` in the tree of `treeSize` entries. */
  inclusionProof(index: number, treeSize: number): Promise<Uint8Array[]>;
  /** RFC 9162 consistency proof from the tree of `first` entries to that of `second`. */
  consistencyProof(first: number, second: number): Promise<Uint8Array[]>;
  /** The newest signed checkpoint, if any. */
  latestCheckpoint(): SignedCheckpoint | undefined;
  /** A signed checkpoint covering every entry acknowledged so far (signs one if needed). */
  checkpoint(): Promise<SignedCheckpoint>;
  /** Finishes pending appends, signs a final checkpoint, releases the directory. */
  close(): Promise<void>;
}
