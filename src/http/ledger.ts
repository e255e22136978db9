import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { toBase64 } from '../ledger/bytes.ts';
import type { Jwks } from '../ledger/keys.ts';
import { LedgerError, type Ledger } from '../ledger/types.ts';
import { HttpError, parseInput } from './errors.ts';

/** Entries per page of GET /api/ledger/entries, at most. */
export const MAX_ENTRIES_PER_PAGE = 1000;
const DEFAULT_ENTRIES_PER_PAGE = 100;

/** A non-negative integer in a query string: canonical decimal, at most 2^53 - 1. */
const count = (what: string) =>
  z
    .string()
    .regex(/^\d+$/, `${what} must be a non-negative integer`)
    .regex(/^(0|[1-9]\d*)$/, `${what} must not have leading zeros`)
    .max(16, `${what} is too large`)
    .transform(Number)
    .refine((n) => Number.isSafeInteger(n), `${what} is too large`);

export const checkpointQuerySchema = z.object({ format: z.enum(['text', 'json']).optional() }).strict();
export const entriesQuerySchema = z.object({ start: count('start'), end: count('end').optional() }).strict();
export const inclusionQuerySchema = z.object({ index: count('index'), treeSize: count('treeSize').optional() }).strict();
export const consistencyQuerySchema = z.object({ first: count('first'), second: count('second').optional() }).strict();

export interface LedgerKeys {
  jwks(): Jwks;
  verifierKeys(origin: string): { kid: string; status: 'active' | 'retired'; vkey: string }[];
}

export interface LedgerRoutesOptions {
  ledger: Ledger;
  /** The key ring (or anything publishing the same public keys). */
  keyRing: LedgerKeys;
  /**
   * The compliance role check for the entries (e.g. requireStaff(staffTokens, ['compliance'])).
   * Without it the entries are refused to everyone: they are never public.
   */
  requireRole?: (req: FastifyRequest, reply: FastifyReply) => Promise<void>;
}

const IMMUTABLE = 'public, max-age=31536000, immutable';

function outOfRange(err: unknown): never {
  if (err instanceof LedgerError && err.code === 'out_of_range') throw new HttpError(400, 'bad_request', err.message);
  throw err;
}

/**
 * The ledger over HTTP. Public, for verifiers: the JWKS, the checkpoint key, the latest signed
 * checkpoint, inclusion and consistency proofs. Compliance role: the entries.
 * Every bad number (negative, fractional, huge, not a number, out of the tree) is a typed 400.
 */
export async function ledgerRoutes(app: FastifyInstance, opts: LedgerRoutesOptions): Promise<void> {
  const { ledger, keyRing } = opts;

  app.get('/.well-known/jwks.json', async (_req, reply) => {
    return reply.header('cache-control', 'public, max-age=60').send(keyRing.jwks());
  });

  app.get('/api/ledger/key', async (_req, reply) => {
    const keys = keyRing.verifierKeys(ledger.origin);
    return reply.header('cache-control', 'public, max-age=60').send({
      origin: ledger.origin,
      /** The signed-note verifier key of the active key (c2sp.org/signed-note). */
      vkey: keys.find((k) => k.status === 'active')?.vkey,
      keys,
    });
  });

  app.get('/api/ledger/checkpoint', async (req, reply) => {
    const { format } = parseInput(checkpointQuerySchema, req.query, 'query');
    const cp = ledger.latestCheckpoint() ?? (await ledger.checkpoint());
    reply.header('cache-control', 'no-cache');
    if (format === 'json') return reply.send({ origin: cp.origin, treeSize: cp.size, rootHash: toBase64(cp.rootHash), note: cp.note });
    return reply.type('text/plain; charset=utf-8').send(cp.note);
  });

  app.get(
    '/api/ledger/entries',
    { preHandler: opts.requireRole ?? denyEntries },
    async (req, reply) => {
      const q = parseInput(entriesQuerySchema, req.query, 'query');
      const size = ledger.size;
      if (q.start > size) throw new HttpError(400, 'bad_request', `start ${q.start} is beyond the ledger size ${size}`);
      const end = q.end ?? Math.min(size, q.start + DEFAULT_ENTRIES_PER_PAGE);
      if (end < q.start) throw new HttpError(400, 'bad_request', `end ${end} is before start ${q.start}`);
      if (end > size) throw new HttpError(400, 'bad_request', `end ${end} is beyond the ledger size ${size}`);
      if (end - q.start > MAX_ENTRIES_PER_PAGE) throw new HttpError(400, 'bad_request', `at most ${MAX_ENTRIES_PER_PAGE} entries per request`);
      const entries = await ledger.getEntries(q.start, end).catch(outOfRange);
      return reply.header('cache-control', 'private, no-store').send({
        start: q.start,
        end,
        size,
        entries: entries.map((e) => ({ index: e.index, leafHash: toBase64(e.leafHash), entry: e.entry })),
      });
    },
  );

  app.get('/api/ledger/proof/inclusion', async (req, reply) => {
    const q = parseInput(inclusionQuerySchema, req.query, 'query');
    const cp = ledger.latestCheckpoint();
    const treeSize = q.treeSize ?? cp?.size ?? ledger.size;
    if (treeSize > ledger.size) throw new HttpError(400, 'bad_request', `treeSize ${treeSize} is beyond the ledger size ${ledger.size}`);
    if (q.index >= treeSize) throw new HttpError(400, 'bad_request', `index ${q.index} is not below treeSize ${treeSize}`);
    const [proof, [entry]] = await Promise.all([ledger.inclusionProof(q.index, treeSize), ledger.getEntries(q.index, q.index + 1)]).catch(outOfRange);
    if (q.treeSize !== undefined) reply.header('cache-control', IMMUTABLE);
    return reply.send({
      index: q.index,
      treeSize,
      leafHash: toBase64(entry!.leafHash),
      proof: proof.map(toBase64),
      ...(cp && cp.size === treeSize ? { checkpoint: cp.note } : {}),
    });
  });

  app.get('/api/ledger/proof/consistency', async (req, reply) => {
    const q = parseInput(consistencyQuerySchema, req.query, 'query');
    const cp = ledger.latestCheckpoint();
    const second = q.second ?? cp?.size ?? ledger.size;
    if (second > ledger.size) throw new HttpError(400, 'bad_request', `second ${second} is beyond the ledger size ${ledger.size}`);
    if (q.first > second) throw new HttpError(400, 'bad_request', `first ${q.first} is beyond second ${second}`);
    const proof = await ledger.consistencyProof(q.first, second).catch(outOfRange);
    if (q.second !== undefined) reply.header('cache-control', IMMUTABLE);
    return reply.send({
      first: q.first,
      second,
      proof: proof.map(toBase64),
      ...(cp && cp.size === second ? { checkpoint: cp.note } : {}),
    });
  });
}

async function denyEntries(): Promise<void> {
  throw new HttpError(403, 'forbidden', 'ledger entries need the compliance role');
}
