/**
 * The PostgreSQL backend of the ledger: the same Ledger as the file backend, for several nodes
 * sharing one database (tables in schema.ts).
 *
 * Writing. Appends queue up like the file backend's and go to the database in group commits
 * (≤ 1024 entries, ≤ 4 MiB): one transaction locks the log's head row (SELECT … FOR UPDATE),
 * numbers the batch from head, inserts it with its leaf hashes, moves the head and commits; an
 * append resolves only after COMMIT returned (synchronous_commit forced on for the transaction).
 * The row lock is what keeps two nodes from writing at once: the second waits for the first's
 * commit, then reads the new head, so indexes have no gap and no duplicate, and the primary key
 * (origin, idx) refuses a duplicate even if that reasoning were wrong. Unlike the file backend a
 * failed transaction does not stop the ledger: the database is the only state, and every
 * transaction re-reads the head under the lock, so a later one starts from what was really
 * committed (an append whose COMMIT was cut off reports 'failed' even if it did reach the disk).
 *
 * The tree. Leaf hashes are stored beside the entries; each node keeps the Merkle tree in memory
 * (merkle.ts) and extends it from the database: under the lock before writing, before any read
 * that asks beyond what it knows, and before a checkpoint. `size` and `latestCheckpoint()` are
 * synchronous, so they can only say what the node knows: to keep that fresh the node LISTENs on a
 * channel every commit NOTIFYs, and re-reads the new entries and checkpoint when told. LISTEN/NOTIFY
 * rather than polling: it costs nothing while the log is idle and reacts within a round trip;
 * a notification lost while the listening connection is down is covered by the catch-up when it
 * reconnects, and correctness never depends on it (every async call reads on demand).
 *
 * Checkpoints are signed with the key ring exactly as the file backend signs them and stored in
 * ledger_checkpoints, under the same head lock, so their order (seq) is also their size order.
 * checkpoint() signs one covering every entry committed by any node.
 *
 * Reads check each entry's bytes against the leaf hash in the node's tree: a changed byte stops
 * the read with LedgerError('corrupt'). The open trusts the stored leaf hashes (it does not read
 * every entry); `videoteller verify --database-url` audits the bytes themselves (audit.ts).
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../../logger.ts';
import { bytesEqual } from '../bytes.ts';
import { formatCheckpoint, parseCheckpoint } from '../checkpoint.ts';
import { encodePrepared, prepareEntry, type EntryInput, type LedgerEntry, type PreparedEntry } from '../entry.ts';
import type { KeyRing } from '../keyring.ts';
import { hashLeaf, MerkleTree, type HashFn } from '../merkle.ts';
import { nodeEd25519Verify, nodeSha256 } from '../node-crypto.ts';
import { openNote, signNote } from '../note.ts';
import { LedgerError, type AppendResult, type Ledger, type SignedCheckpoint, type StoredEntry } from '../types.ts';
import { describeDatabaseUrl, newClient, openPool } from './connect.ts';
import { checkSchemaName, DEFAULT_SCHEMA, migrate, tables, type Tables } from './schema.ts';

export const DEFAULT_MAX_BATCH = 1024;
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/** Leaf hashes read per query when catching up. */
const CATCH_UP_ROWS = 50_000;
const RELISTEN_MS = 1000;

export interface PostgresLedgerOptions {
  /** DATABASE_URL */
  databaseUrl: string;
  /** The schema holding the tables (LEDGER_PG_SCHEMA, default `videoteller`). */
  schema?: string;
  /** Checkpoint origin (LEDGER_ORIGIN); fixed when the schema's log is created. */
  origin: string;
  keyRing: KeyRing;
  log: Logger;
  /** Sign a checkpoint at most this often while entries arrive (CHECKPOINT_INTERVAL_MS). */
  checkpointIntervalMs: number;
  /** Entries per group commit at most. */
  maxBatch?: number;
  /** Connections in the pool (default 4). */
  poolSize?: number;
  /** Follow other nodes' commits with LISTEN/NOTIFY (default true). */
  listen?: boolean;
  hash?: HashFn;
}

interface Pending {
  prepared: PreparedEntry;
  /** Upper bound of its canonical size, to cap a batch's bytes before the index is known. */
  approxBytes: number;
  resolve: (r: AppendResult) => void;
  reject: (err: Error) => void;
}

type Queryable = pg.Pool | pg.PoolClient;

const num = (v: string | number): number => (typeof v === 'number' ? v : Number(v));

export class PostgresLedger implements Ledger {
  readonly origin: string;
  readonly schema: string;
  /** Group commits (transactions) and the entries they carried, and checkpoints signed here. */
  readonly stats = { commits: 0, entries: 0, checkpoints: 0 };
  private readonly hash: HashFn;
  private readonly tree: MerkleTree;
  private readonly t: Tables;
  private readonly maxBatch: number;
  /** NOTIFY channel of this log, and this node's id in the payload (to ignore its own commits). */
  private readonly channel: string;
  private readonly nodeId = randomBytes(6).toString('hex');
  private latest: SignedCheckpoint | undefined;
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;
  private released = false;
  private closing: Promise<void> | undefined;
  private cpTimer: NodeJS.Timeout | undefined;
  private lastCpAt = 0;
  private cpChain: Promise<void> = Promise.resolve();
  /** A checkpoint queued but not yet started: callers until it starts share it. */
  private cpQueued: Promise<SignedCheckpoint> | undefined;
  private listener: pg.Client | undefined;
  private relistenTimer: NodeJS.Timeout | undefined;
  private following: Promise<void> | undefined;
  private followAgain = false;

  private constructor(
    private readonly opts: PostgresLedgerOptions,
    private readonly pool: pg.Pool,
  ) {
    this.origin = opts.origin;
    this.schema = opts.schema ?? DEFAULT_SCHEMA;
    this.t = tables(this.schema);
    this.hash = opts.hash ?? nodeSha256;
    this.tree = new MerkleTree(this.hash);
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    this.channel = `vt_ledger_${Buffer.from(nodeSha256(new TextEncoder().encode(`${this.schema}\n${this.origin}`))).toString('hex').slice(0, 40)}`;
  }

  /**
   * Connects, creates the tables if needed, loads the leaf hashes and checks the newest
   * checkpoint against them and the key ring. PostgreSQL unreachable: LedgerError('failed').
   */
  static async open(opts: PostgresLedgerOptions): Promise<PostgresLedger> {
    if (!opts.origin || /[\s+]/.test(opts.origin)) throw new LedgerError('config', `invalid ledger origin ${JSON.stringify(opts.origin)}: no spaces or '+'`);
    checkSchemaName(opts.schema ?? DEFAULT_SCHEMA);
    const pool = await openPool({ url: opts.databaseUrl, log: opts.log, ...(opts.poolSize ? { max: opts.poolSize } : {}) });
    const ledger = new PostgresLedger(opts, pool);
    try {
      const client = await pool.connect();
      let created: boolean;
      try {
        ({ created } = await migrate(client, ledger.schema, ledger.origin));
      } finally {
        client.release();
      }
      if (created) opts.log.info({ schema: ledger.schema, origin: ledger.origin }, 'created a new ledger in PostgreSQL');
      await ledger.load();
      if (!ledger.latest || ledger.size > ledger.latest.size) await ledger.checkpoint();
      if (opts.listen !== false) await ledger.listen();
    } catch (err) {
      await ledger.release();
      throw err;
    }
    opts.log.info(
      { db: describeDatabaseUrl(opts.databaseUrl), schema: ledger.schema, origin: ledger.origin, size: ledger.size, checkpoint: ledger.latest?.size },
      'ledger open',
    );
    return ledger;
  }

  /** Entries this node knows to be committed (by any node). */
  get size(): number {
    return this.tree.size;
  }

  private get log(): Logger {
    return this.opts.log;
  }

  // ---- the tree, from the database -----------------------------------------------------------

  private async load(): Promise<void> {
    const head = await this.readHead(this.pool);
    await this.catchUp(this.pool);
    if (this.tree.size < head) throw new LedgerError('corrupt', `the log's head says ${head} entries, but entries stop at ${this.tree.size}`);
    const stored = await this.newestStoredCheckpoint(this.pool);
    if (stored) this.latest = await this.checkStored(stored);
    // The interval counts from the open, as in the file backend.
    this.lastCpAt = Date.now();
  }

  private async readHead(q: Queryable, forUpdate = false): Promise<number> {
    const r = await q.query<{ size: string }>(`SELECT size FROM ${this.t.logs} WHERE origin = $1${forUpdate ? ' FOR UPDATE' : ''}`, [this.origin]);
    if (r.rows.length === 0) throw new LedgerError('corrupt', `the head row of log ${this.origin} in ${this.t.logs} is missing`);
    return num(r.rows[0]!.size);
  }

  /**
   * Extends the tree with every committed entry past it (below `upTo` if given). Committed entries
   * always form a prefix (each transaction adds a contiguous range after the one before it), so
   * rows must continue the tree exactly; rows it already has must carry the same leaf hash.
   */
  private async catchUp(q: Queryable, upTo = Number.MAX_SAFE_INTEGER): Promise<void> {
    for (;;) {
      const from = this.tree.size;
      if (from >= upTo) return;
      const r = await q.query<{ idx: string; leaf_hash: Buffer }>(
        `SELECT idx, leaf_hash FROM ${this.t.entries} WHERE origin = $1 AND idx >= $2 AND idx < $3 ORDER BY idx LIMIT ${CATCH_UP_ROWS}`,
        [this.origin, from, upTo],
      );
      for (const row of r.rows) this.applyLeaf(num(row.idx), row.leaf_hash);
      if (r.rows.length < CATCH_UP_ROWS) return;
    }
  }

  private applyLeaf(index: number, leafHash: Uint8Array): void {
    const size = this.tree.size;
    if (index < size) {
      if (!bytesEqual(this.tree.leafHash(index), leafHash)) throw new LedgerError('corrupt', `the leaf hash of entry ${index} changed in the database`);
      return;
    }
    if (index !== size) throw new LedgerError('corrupt', `entry ${size} is missing from ${this.t.entries} (the next one is ${index})`);
    this.tree.append(leafHash);
  }

  /** Reads up to `size` if this node knows fewer entries (another node appended them). */
  private async ensure(size: number): Promise<void> {
    this.checkOpen();
    if (Number.isSafeInteger(size) && size > this.tree.size) await this.catchUp(this.pool);
  }

  private checkOpen(): void {
    if (this.released) throw new LedgerError('closed', 'the ledger is closed');
  }

  // ---- appending ----------------------------------------------------------------------------

  append(input: EntryInput): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new LedgerError('closed', 'the ledger is closed'));
    let prepared: PreparedEntry;
    try {
      prepared = prepareEntry(input, new Date());
    } catch (err) {
      return Promise.reject(err);
    }
    // The index is at most 16 digits: the size with the longest index bounds the real one.
    const approxBytes = encodePrepared(prepared, Number.MAX_SAFE_INTEGER).length;
    return new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ prepared, approxBytes, resolve, reject });
      // A microtask later, so that appends issued together share the first transaction.
      this.flushing ??= Promise.resolve().then(() => this.flushLoop());
    });
  }

  private takeBatch(): Pending[] {
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && n < this.maxBatch && (n === 0 || bytes + this.queue[n]!.approxBytes <= MAX_BATCH_BYTES)) {
      bytes += this.queue[n]!.approxBytes;
      n++;
    }
    return this.queue.splice(0, n);
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.takeBatch();
        try {
          const results = await this.commitBatch(batch);
          for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!);
        } catch (err) {
          const e =
            err instanceof LedgerError ? err : new LedgerError('failed', `ledger write to PostgreSQL failed: ${(err as Error).message}`, { cause: err });
          this.log.error({ err, entries: batch.length }, 'a ledger group commit failed; its appends are rejected');
          for (const p of batch) p.reject(e);
          continue;
        }
        this.scheduleCheckpoint();
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /** One transaction: lock the head, catch up, insert the batch at head, move the head, commit. */
  private async commitBatch(batch: Pending[]): Promise<AppendResult[]> {
    const client = await this.pool.connect();
    let ok = false;
    try {
      await client.query('BEGIN; SET LOCAL synchronous_commit TO on');
      const head = await this.readHead(client, true);
      // A new statement, so a new snapshot: it sees what the previous lock holder committed.
      await this.catchUp(client, head);
      if (this.tree.size !== head) throw new LedgerError('corrupt', `the log's head says ${head} entries, but entries stop at ${this.tree.size}`);
      const indexes: number[] = [];
      const sessions: string[] = [];
      const entries: Buffer[] = [];
      const leaves: Buffer[] = [];
      for (const [i, p] of batch.entries()) {
        const bytes = encodePrepared(p.prepared, head + i);
        indexes.push(head + i);
        sessions.push(p.prepared.sessionId);
        entries.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        leaves.push(Buffer.from(hashLeaf(bytes, this.hash)));
      }
      const size = head + batch.length;
      await client.query(
        `WITH ins AS (
           INSERT INTO ${this.t.entries} (origin, idx, session_id, entry, leaf_hash)
           SELECT $1, e.idx, e.sid, e.entry, e.leaf FROM unnest($2::bigint[], $3::text[], $4::bytea[], $5::bytea[]) AS e(idx, sid, entry, leaf)
         ), head AS (
           UPDATE ${this.t.logs} SET size = $6 WHERE origin = $1
         )
         SELECT pg_notify($7, $8)`,
        [this.origin, indexes, sessions, entries, leaves, size, this.channel, `${this.nodeId} e ${size}`],
      );
      await client.query('COMMIT');
      ok = true;
      this.stats.commits++;
      this.stats.entries += batch.length;
      return batch.map((p, i) => {
        const index = head + i;
        this.applyLeaf(index, leaves[i]!);
        const pr = p.prepared;
        return {
          index,
          leafHash: new Uint8Array(leaves[i]!),
          entry: { index, time: pr.time, sessionId: pr.sessionId, type: pr.type, actor: pr.actor, payload: JSON.parse(pr.payloadJson) },
        };
      });
    } finally {
      if (!ok) await client.query('ROLLBACK').catch(() => {});
      // A connection that failed mid-transaction is dropped rather than reused.
      client.release(!ok);
    }
  }

  // ---- checkpoints --------------------------------------------------------------------------

  private scheduleCheckpoint(): void {
    if (this.cpTimer || this.closed) return;
    const delay = Math.max(0, this.lastCpAt + this.opts.checkpointIntervalMs - Date.now());
    this.cpTimer = setTimeout(() => {
      this.cpTimer = undefined;
      this.checkpoint().catch((err) => this.log.error({ err }, 'scheduled checkpoint failed'));
    }, delay);
    this.cpTimer.unref();
  }

  latestCheckpoint(): SignedCheckpoint | undefined {
    return this.latest;
  }

  checkpoint(): Promise<SignedCheckpoint> {
    if (this.released) return Promise.reject(new LedgerError('closed', 'the ledger is closed'));
    if (this.cpQueued) return this.cpQueued;
    const promise = this.cpChain.then(() => {
      this.cpQueued = undefined;
      return this.signCheckpoint();
    });
    this.cpQueued = promise;
    this.cpChain = promise.then(
      () => {},
      () => {},
    );
    return promise;
  }

  /**
   * Under the head lock (so no entry commits meanwhile and checkpoints are stored in size order):
   * the stored newest checkpoint if it covers the head, else a new one over the whole head.
   */
  private async signCheckpoint(): Promise<SignedCheckpoint> {
    this.checkOpen();
    const client = await this.pool.connect();
    let ok = false;
    try {
      await client.query('BEGIN; SET LOCAL synchronous_commit TO on');
      const head = await this.readHead(client, true);
      await this.catchUp(client, head);
      const stored = await this.newestStoredCheckpoint(client);
      let cp: SignedCheckpoint;
      if (stored && stored.size >= head) {
        cp = await this.checkStored(stored);
        await client.query('COMMIT');
      } else {
        const rootHash = this.tree.root(head);
        const note = await signNote(formatCheckpoint({ origin: this.origin, size: head, rootHash, extensions: [] }), [this.opts.keyRing.noteSigner(this.origin)]);
        await client.query(
          `WITH ins AS (INSERT INTO ${this.t.checkpoints} (origin, size, root_hash, note) VALUES ($1, $2, $3, $4)) SELECT pg_notify($5, $6)`,
          [this.origin, head, Buffer.from(rootHash), note, this.channel, `${this.nodeId} c ${head}`],
        );
        await client.query('COMMIT');
        this.stats.checkpoints++;
        this.log.debug({ size: head }, 'signed a checkpoint');
        cp = { origin: this.origin, size: head, rootHash, note };
      }
      ok = true;
      this.lastCpAt = Date.now();
      this.adopt(cp);
      return cp;
    } catch (err) {
      if (err instanceof LedgerError) throw err;
      throw new LedgerError('failed', `checkpoint in PostgreSQL failed: ${(err as Error).message}`, { cause: err });
    } finally {
      if (!ok) await client.query('ROLLBACK').catch(() => {});
      client.release(!ok);
    }
  }

  private adopt(cp: SignedCheckpoint): void {
    if (!this.latest || cp.size > this.latest.size) this.latest = cp;
  }

  private async newestStoredCheckpoint(q: Queryable): Promise<{ size: number; note: string } | undefined> {
    const r = await q.query<{ size: string; note: string }>(`SELECT size, note FROM ${this.t.checkpoints} WHERE origin = $1 ORDER BY seq DESC LIMIT 1`, [this.origin]);
    const row = r.rows[0];
    return row ? { size: num(row.size), note: row.note } : undefined;
  }

  /**
   * A stored checkpoint (another node's, or from before a restart) is taken only if a key of the
   * ring signed it and it matches this node's tree; anything else means the database was changed.
   */
  private async checkStored(stored: { size: number; note: string }): Promise<SignedCheckpoint> {
    let opened;
    try {
      opened = await openNote(stored.note, this.opts.keyRing.noteKeys(this.origin), nodeEd25519Verify);
    } catch (err) {
      throw new LedgerError('corrupt', `the newest checkpoint in ${this.t.checkpoints} is not signed by a key of the key ring: ${(err as Error).message}`);
    }
    const cp = parseCheckpoint(opened.text);
    if (cp.origin !== this.origin || cp.size !== stored.size) throw new LedgerError('corrupt', `the newest checkpoint in ${this.t.checkpoints} does not say what its row says`);
    if (cp.size > this.tree.size) {
      throw new LedgerError('corrupt', `the newest checkpoint covers ${cp.size} entries but only ${this.tree.size} are in ${this.t.entries}: acknowledged entries are missing`);
    }
    if (!bytesEqual(this.tree.root(cp.size), cp.rootHash)) {
      throw new LedgerError('corrupt', `the newest checkpoint (size ${cp.size}) does not match the entries' leaf hashes: they were changed`);
    }
    return { origin: cp.origin, size: cp.size, rootHash: cp.rootHash, note: stored.note };
  }

  // ---- following other nodes ----------------------------------------------------------------

  private async listen(): Promise<void> {
    const client = newClient(this.opts.databaseUrl, 'videoteller-ledger-listen');
    const lost = (err?: Error) => {
      if (this.listener !== client) return;
      this.listener = undefined;
      client.end().catch(() => {});
      if (this.closed) return;
      this.log.warn({ err }, 'the ledger lost its LISTEN connection; reconnecting (reads stay correct meanwhile)');
      this.relistenTimer = setTimeout(() => {
        this.relistenTimer = undefined;
        this.listen()
          .then(() => this.follow())
          .catch((e) => lost(e));
      }, RELISTEN_MS);
      this.relistenTimer.unref();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (msg) => {
      if (msg.payload?.startsWith(`${this.nodeId} `)) return;
      this.follow();
    });
    this.listener = client;
    await client.connect();
    await client.query(`LISTEN ${this.channel}`);
  }

  /** Reads what other nodes committed; runs one at a time, again if told meanwhile. */
  private follow(): void {
    if (this.released) return;
    if (this.following) {
      this.followAgain = true;
      return;
    }
    this.following = (async () => {
      do {
        this.followAgain = false;
        // The checkpoint first: the entries it covers were committed before it.
        const stored = await this.newestStoredCheckpoint(this.pool);
        await this.catchUp(this.pool);
        if (stored && stored.size > (this.latest?.size ?? -1)) this.adopt(await this.checkStored(stored));
      } while (this.followAgain && !this.released);
    })()
      .catch((err) => {
        if (!this.released) this.log.error({ err }, 'could not read what other nodes appended to the ledger');
      })
      .finally(() => {
        this.following = undefined;
      });
  }

  // ---- reading and proofs -------------------------------------------------------------------

  private async checkRange(start: number, end: number): Promise<void> {
    await this.ensure(end);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > this.size) {
      throw new LedgerError('out_of_range', `entries [${start}, ${end}) are not within [0, ${this.size})`);
    }
  }

  /** Parses rows read from the database, checking each entry's bytes against the tree. */
  private toStored(row: { idx: string; entry: Buffer }): StoredEntry {
    const index = num(row.idx);
    const bytes = new Uint8Array(row.entry);
    const leafHash = this.tree.leafHash(index);
    if (!bytesEqual(hashLeaf(bytes, this.hash), leafHash)) {
      throw new LedgerError('corrupt', `entry ${index} in ${this.t.entries} no longer matches its leaf hash: its bytes were changed (run videoteller verify --database-url)`);
    }
    return { index, entry: JSON.parse(new TextDecoder().decode(bytes)) as LedgerEntry, bytes, leafHash };
  }

  async getEntries(start: number, end: number): Promise<StoredEntry[]> {
    await this.checkRange(start, end);
    if (start === end) return [];
    const r = await this.pool.query<{ idx: string; entry: Buffer }>(
      `SELECT idx, entry FROM ${this.t.entries} WHERE origin = $1 AND idx >= $2 AND idx < $3 ORDER BY idx`,
      [this.origin, start, end],
    );
    if (r.rows.length !== end - start || r.rows.some((row, i) => num(row.idx) !== start + i)) {
      throw new LedgerError('corrupt', `entries ${start}..${end - 1} are no longer all in ${this.t.entries}`);
    }
    return r.rows.map((row) => this.toStored(row));
  }

  async entriesOf(sessionId: string): Promise<LedgerEntry[]> {
    this.checkOpen();
    const r = await this.pool.query<{ idx: string; entry: Buffer }>(
      `SELECT idx, entry FROM ${this.t.entries} WHERE origin = $1 AND session_id = $2 ORDER BY idx`,
      [this.origin, sessionId],
    );
    const last = r.rows[r.rows.length - 1];
    if (last) await this.ensure(num(last.idx) + 1);
    return r.rows.map((row) => this.toStored(row).entry);
  }

  async rootHash(treeSize?: number): Promise<Uint8Array> {
    if (treeSize === undefined) {
      this.checkOpen();
      await this.catchUp(this.pool);
      return this.tree.root();
    }
    await this.checkRange(0, treeSize);
    return this.tree.root(treeSize);
  }

  async inclusionProof(index: number, treeSize: number): Promise<Uint8Array[]> {
    await this.checkRange(0, treeSize);
    if (!Number.isSafeInteger(index) || index < 0 || index >= treeSize) {
      throw new LedgerError('out_of_range', `index ${index} is not below tree size ${treeSize}`);
    }
    return this.tree.inclusionProof(index, treeSize);
  }

  async consistencyProof(first: number, second: number): Promise<Uint8Array[]> {
    await this.checkRange(first, second);
    return this.tree.consistencyProof(first, second);
  }

  // ---- closing ------------------------------------------------------------------------------

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      while (this.flushing) await this.flushing;
      if (this.cpTimer) clearTimeout(this.cpTimer);
      this.cpTimer = undefined;
      if (!this.latest || this.latest.size < this.size) {
        await this.checkpoint().catch((err) => this.log.error({ err }, 'final checkpoint failed'));
      }
      await this.cpChain;
      await this.following;
      await this.release();
      this.log.info({ size: this.size, checkpoint: this.latest?.size }, 'ledger closed');
    })();
    return this.closing;
  }

  private async release(): Promise<void> {
    this.closed = true;
    this.released = true;
    if (this.relistenTimer) clearTimeout(this.relistenTimer);
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => {});
    await this.pool.end().catch(() => {});
  }

  /** Approximate memory the tree holds, for diagnostics. */
  get memoryBytes(): number {
    return this.tree.memoryBytes;
  }
}
