/**
 * Durable webhook outbox: signed deliveries to the bank's systems, retried until a 2xx.
 *
 * Public API (see also index.ts):
 *   WebhookOutbox.open(options, evidence, log) → Promise<WebhookOutbox>   (resumes pending deliveries)
 *   outbox.enqueue(clientId, event)  → Promise<EnqueueResult>  resolves once the delivery is on disk
 *   outbox.canDeliver(clientId)      → boolean                 a webhook is configured for this client
 *   outbox.pendingIds()              → string[]                deliveries not yet settled (this node)
 *   outbox.whenIdle()                → Promise<void>           nothing pending in memory (tests, shutdown)
 *   outbox.close()                   → Promise<void>           stops; in-flight attempts are aborted and
 *                                                              stay pending on disk for the next start
 *
 * On disk, under `${dataDir}/webhooks/`:
 *   pending/<deliveryId>.json  one file per delivery not yet settled (0600), written to a temp file,
 *                              fsync'd, renamed and the folder fsync'd before enqueue() resolves;
 *                              rewritten the same way after each failed attempt (attempt count, next
 *                              time), removed after a 2xx.
 *   dead/<deliveryId>.json     deliveries that failed for good (permanent 4xx, attempts exhausted,
 *                              expired, no endpoint), with the reason; sensitive fields (the one-time
 *                              code) are redacted first. A pending file that does not parse is moved
 *                              here unchanged as `<name>.<ms>.corrupt`, with a log line.
 *
 * Attempts: POST with Videoteller-Signature (fresh timestamp each attempt), Videoteller-Event and
 * Videoteller-Delivery (the same id on every attempt: the receiver's idempotency key). Redirects are
 * not followed. 2xx = delivered; 408, 429, 3xx, 5xx, network errors and timeouts are retried with
 * exponential backoff and equal jitter (base · 2^(n-1), capped, then between half and all of it);
 * on 429/503 a Retry-After (seconds or HTTP date) is honoured as a lower bound, capped at the
 * backoff maximum; any other 4xx is permanent. Each settled delivery is recorded in the session's
 * evidence as `webhook.delivered` or `webhook.failed` (event type, ids, attempts, status: never
 * the body). Failed attempts before the last are only logged (they would flood the ledger).
 *
 * Multi-node: each node delivers what it enqueued, from its own DATA_DIR; nothing is shared. A node
 * that is gone for good leaves its pending/ folder behind: start a node on that DATA_DIR (or move
 * the files into a live node's pending/ while it is stopped) to deliver them.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, writeFileDurably } from '../durable-file.ts';
import { z } from 'zod';
import type { EvidenceSink } from '../evidence.ts';
import type { Logger } from '../logger.ts';
import type { WebhookEndpoint } from './config.ts';
import { buildEvent, redactBody, WEBHOOK_EVENT_TYPES, type WebhookEventInput } from './events.ts';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signWebhook } from './signature.ts';

export interface WebhookOutboxOptions {
  /** The server's DATA_DIR; the outbox lives in its `webhooks/` folder. */
  dataDir: string;
  /** One per bank client (API key id). Empty: every enqueue is skipped with a log line. */
  endpoints: readonly WebhookEndpoint[];
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  timeoutMs: number;
  concurrency: number;
  /** Clock and jitter source, injectable for tests. */
  now?: () => number;
  random?: () => number;
}

export type EnqueueResult =
  | { status: 'queued'; deliveryId: string; eventId: string }
  | { status: 'skipped'; reason: 'no_webhook' };

export const WEBHOOK_EVIDENCE = { delivered: 'webhook.delivered', failed: 'webhook.failed' } as const;

/** Why a delivery went to dead/. */
export type DeadReason = 'permanent' | 'exhausted' | 'expired' | 'no_endpoint';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PENDING_NAME = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$/;
const MAX_TIMER_MS = 2 ** 31 - 1;

const ms = z.number().int().nonnegative();
export const pendingDeliverySchema = z
  .object({
    version: z.literal(1),
    deliveryId: z.string().regex(UUID),
    eventId: z.string().regex(UUID),
    eventType: z.enum(WEBHOOK_EVENT_TYPES),
    clientId: z.string().min(1).max(64),
    sessionId: z.string().min(1).max(128),
    /** The exact JSON body that is signed and sent. */
    body: z.string().min(2).max(4 * 1024 * 1024),
    createdAt: ms,
    deliverBy: ms.nullable(),
    attempts: ms,
    nextAttemptAt: ms,
    lastAttemptAt: ms.nullable(),
    lastStatus: z.number().int().min(100).max(599).nullable(),
    lastError: z.string().max(200).nullable(),
  })
  .strict()
  .superRefine((d, ctx) => {
    // The body must be the event the record describes (a half-edited file is corrupt, not sendable).
    try {
      const b = JSON.parse(d.body) as { id?: unknown; type?: unknown; data?: { sessionId?: unknown } };
      if (b.id !== d.eventId || b.type !== d.eventType || b.data?.sessionId !== d.sessionId) {
        ctx.addIssue({ code: 'custom', path: ['body'], message: 'does not match the record' });
      }
    } catch {
      ctx.addIssue({ code: 'custom', path: ['body'], message: 'is not JSON' });
    }
  });
export type PendingDelivery = z.infer<typeof pendingDeliverySchema>;

/** Temp file (0600) in the same folder, fsync, rename, fsync the folder: all or nothing, durable. */
function writeAtomic(dir: string, name: string, data: string): Promise<void> {
  return writeFileDurably(path.join(dir, name), data);
}

/** Retry-After as milliseconds (delta-seconds or HTTP date), or undefined. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d{1,10}$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Delay before attempt n+1 after n failed attempts: base·2^(n-1) capped at max, equal jitter. */
export function backoffDelay(failedAttempts: number, baseMs: number, maxMs: number, random: number): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(40, Math.max(0, failedAttempts - 1)));
  return Math.round(exp / 2 + (random * exp) / 2);
}

type AttemptOutcome =
  | { kind: 'delivered'; status: number }
  | { kind: 'retry'; status: number | null; error: string; retryAfterMs?: number }
  | { kind: 'permanent'; status: number; error: string }
  | { kind: 'aborted' };

export class WebhookOutbox {
  readonly pendingDir: string;
  readonly deadDir: string;
  private readonly endpoints: Map<string, WebhookEndpoint>;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly records = new Map<string, PendingDelivery>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly ready: string[] = [];
  private readonly inFlight = new Map<string, { abort: AbortController; done: Promise<void> }>();
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  private constructor(
    private readonly opts: WebhookOutboxOptions,
    private readonly evidence: EvidenceSink,
    private readonly log: Logger,
  ) {
    const root = path.join(path.resolve(opts.dataDir), 'webhooks');
    this.pendingDir = path.join(root, 'pending');
    this.deadDir = path.join(root, 'dead');
    this.endpoints = new Map(opts.endpoints.map((e) => [e.clientId, e]));
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    for (const [k, v] of Object.entries({ maxAttempts: opts.maxAttempts, retryBaseMs: opts.retryBaseMs, retryMaxMs: opts.retryMaxMs, timeoutMs: opts.timeoutMs, concurrency: opts.concurrency })) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer`);
    }
  }

  /** Creates the folders, then resumes every pending delivery found on disk. */
  static async open(opts: WebhookOutboxOptions, evidence: EvidenceSink, log: Logger): Promise<WebhookOutbox> {
    const outbox = new WebhookOutbox(opts, evidence, log);
    await outbox.ensureDirs();
    if (outbox.endpoints.size === 0) log.info('no webhooks configured (WEBHOOKS): events are not pushed, the bank systems fetch results through the API');
    await outbox.resume();
    return outbox;
  }

  canDeliver(clientId: string): boolean {
    return this.endpoints.has(clientId);
  }

  /**
   * Validates the event (WebhookEventError on bad input), writes the delivery durably and starts
   * delivering it. Resolves once the pending file is fsync'd. A client without a configured
   * webhook: resolves `{ status: 'skipped' }` with a log line, never an error.
   */
  async enqueue(clientId: string, event: WebhookEventInput): Promise<EnqueueResult> {
    if (this.closed) throw new Error('webhook outbox is closed');
    const now = this.now();
    const built = buildEvent(event, now);
    if (!this.endpoints.has(clientId)) {
      this.log.info({ sessionId: built.sessionId, clientId, eventType: built.body.type }, 'no webhook configured for this client: event not pushed');
      return { status: 'skipped', reason: 'no_webhook' };
    }
    const record: PendingDelivery = {
      version: 1,
      deliveryId: randomUUID(),
      eventId: built.body.id,
      eventType: built.body.type,
      clientId,
      sessionId: built.sessionId,
      body: built.rawBody,
      createdAt: now,
      deliverBy: built.deliverBy,
      attempts: 0,
      nextAttemptAt: now,
      lastAttemptAt: null,
      lastStatus: null,
      lastError: null,
    };
    await this.writePending(record);
    if (this.closed) return { status: 'queued', deliveryId: record.deliveryId, eventId: record.eventId };
    this.records.set(record.deliveryId, record);
    this.log.info({ sessionId: record.sessionId, clientId, eventType: record.eventType, deliveryId: record.deliveryId }, 'webhook queued');
    this.schedule(record);
    return { status: 'queued', deliveryId: record.deliveryId, eventId: record.eventId };
  }

  pendingIds(): string[] {
    return [...this.records.keys()];
  }

  /** Resolves when no delivery is pending in this outbox (delivered or dead), or once closed. */
  whenIdle(): Promise<void> {
    if (this.closed || this.records.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.ready.length = 0;
    for (const f of this.inFlight.values()) f.abort.abort();
    await Promise.all([...this.inFlight.values()].map((f) => f.done));
    this.records.clear();
    this.notifyIdle();
  }

  // ------------------------------------------------------------------------------------------

  private async ensureDirs(): Promise<void> {
    const root = path.dirname(this.pendingDir);
    await fs.mkdir(root, { recursive: true, mode: 0o700 });
    for (const d of [this.pendingDir, this.deadDir]) {
      try {
        await fs.mkdir(d, { mode: 0o700 });
        await fsyncDir(root);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  }

  private async resume(): Promise<void> {
    const names = await fs.readdir(this.pendingDir);
    let resumed = 0;
    for (const name of names.sort()) {
      const file = path.join(this.pendingDir, name);
      if (name.startsWith('.') && name.endsWith('.tmp')) {
        // An enqueue that never completed (it did not resolve, so nobody relied on it).
        await fs.rm(file, { force: true });
        continue;
      }
      const match = PENDING_NAME.exec(name);
      let record: PendingDelivery | undefined;
      let problem = 'unexpected file name';
      if (match) {
        try {
          const parsed = pendingDeliverySchema.safeParse(JSON.parse(await fs.readFile(file, 'utf8')));
          if (parsed.success && parsed.data.deliveryId === match[1]) record = parsed.data;
          else problem = parsed.success ? 'delivery id does not match the file name' : `does not parse: ${parsed.error.issues.map((i) => i.path.join('.') || 'record').join(', ')}`;
        } catch (err) {
          problem = (err as NodeJS.ErrnoException).code === 'EISDIR' ? 'is a directory' : 'is not JSON';
        }
      }
      if (!record) {
        await this.quarantine(name, problem);
        continue;
      }
      this.records.set(record.deliveryId, record);
      this.schedule(record);
      resumed += 1;
    }
    if (resumed) this.log.info({ resumed }, 'webhook deliveries resumed from disk');
  }

  /** Moves an unreadable pending file to dead/ unchanged (it may hold a code: it stays 0600 there). */
  private async quarantine(name: string, problem: string): Promise<void> {
    const target = `${name}.${this.now()}.corrupt`;
    try {
      await fs.rename(path.join(this.pendingDir, name), path.join(this.deadDir, target));
      await fsyncDir(this.deadDir);
      await fsyncDir(this.pendingDir);
      this.log.error({ file: name, movedTo: `dead/${target}`, problem }, 'corrupt pending webhook delivery moved to dead/');
    } catch (err) {
      this.log.error({ file: name, problem, err }, 'corrupt pending webhook delivery could not be moved to dead/');
    }
  }

  private writePending(record: PendingDelivery): Promise<void> {
    return writeAtomic(this.pendingDir, `${record.deliveryId}.json`, JSON.stringify(record));
  }

  private schedule(record: PendingDelivery): void {
    if (this.closed) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, record.nextAttemptAt - this.now()));
    const timer = setTimeout(() => {
      this.timers.delete(record.deliveryId);
      this.ready.push(record.deliveryId);
      this.pump();
    }, delay);
    // Pending deliveries are on disk: they must not keep a process alive that is otherwise done.
    timer.unref();
    this.timers.set(record.deliveryId, timer);
  }

  private pump(): void {
    while (!this.closed && this.inFlight.size < this.opts.concurrency && this.ready.length > 0) {
      const id = this.ready.shift()!;
      const record = this.records.get(id);
      if (!record) continue;
      const abort = new AbortController();
      const done = this.runAttempt(record, abort.signal)
        .catch((err) => this.log.error({ sessionId: record.sessionId, deliveryId: id, err }, 'webhook delivery step failed'))
        .finally(() => {
          this.inFlight.delete(id);
          this.pump();
        });
      this.inFlight.set(id, { abort, done });
    }
  }

  private async runAttempt(record: PendingDelivery, closing: AbortSignal): Promise<void> {
    const endpoint = this.endpoints.get(record.clientId);
    if (!endpoint) return this.fail(record, 'no_endpoint', 'no webhook configured for this client any more');
    if (record.deliverBy !== null && this.now() > record.deliverBy) return this.fail(record, 'expired', 'expired before delivery');

    const outcome = await this.attempt(endpoint, record, closing);
    if (outcome.kind === 'aborted') return; // closing: the file stays pending for the next start
    const attemptAt = this.now();
    const next: PendingDelivery = {
      ...record,
      attempts: record.attempts + 1,
      lastAttemptAt: attemptAt,
      lastStatus: outcome.status,
      lastError: outcome.kind === 'delivered' ? null : outcome.error,
    };
    const ctx = { sessionId: record.sessionId, clientId: record.clientId, eventType: record.eventType, deliveryId: record.deliveryId, attempts: next.attempts, status: next.lastStatus };
    if (outcome.kind === 'delivered') {
      this.log.info(ctx, 'webhook delivered');
      await this.settle(next, WEBHOOK_EVIDENCE.delivered, {});
      return;
    }
    if (outcome.kind === 'permanent') return this.fail(next, 'permanent', outcome.error);
    if (next.attempts >= this.opts.maxAttempts) return this.fail(next, 'exhausted', outcome.error);

    let delay = backoffDelay(next.attempts, this.opts.retryBaseMs, this.opts.retryMaxMs, this.random());
    if (outcome.retryAfterMs !== undefined) delay = Math.max(delay, Math.min(outcome.retryAfterMs, this.opts.retryMaxMs));
    next.nextAttemptAt = attemptAt + delay;
    if (next.deliverBy !== null && next.nextAttemptAt > next.deliverBy) return this.fail(next, 'expired', outcome.error);
    this.log.warn({ ...ctx, error: outcome.error, retryInMs: delay }, 'webhook attempt failed, will retry');
    try {
      await this.writePending(next);
    } catch (err) {
      // The older copy on disk is still valid (fewer attempts counted); keep going from memory.
      this.log.error({ ...ctx, err }, 'could not update the pending webhook delivery on disk');
    }
    if (this.closed) return;
    this.records.set(next.deliveryId, next);
    this.schedule(next);
  }

  private async attempt(endpoint: WebhookEndpoint, record: PendingDelivery, closing: AbortSignal): Promise<AttemptOutcome> {
    const timestampS = Math.floor(this.now() / 1000);
    let res: Response;
    try {
      res = await fetch(endpoint.url, {
        method: 'POST',
        redirect: 'manual',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'videoteller-webhooks/1',
          [SIGNATURE_HEADER]: signWebhook(endpoint.secret, record.body, timestampS),
          [EVENT_HEADER]: record.eventType,
          [DELIVERY_HEADER]: record.deliveryId,
        },
        body: record.body,
        signal: AbortSignal.any([closing, AbortSignal.timeout(this.opts.timeoutMs)]),
      });
    } catch (err) {
      if (closing.aborted) return { kind: 'aborted' };
      const name = (err as Error).name;
      return { kind: 'retry', status: null, error: name === 'TimeoutError' ? 'timeout' : 'network_error' };
    }
    // The receiver's answer body is not used; release the connection without reading it.
    await res.body?.cancel().catch(() => undefined);
    const status = res.status;
    if (status >= 200 && status < 300) return { kind: 'delivered', status };
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) return { kind: 'permanent', status, error: `http_${status}` };
    const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(res.headers.get('retry-after'), this.now()) : undefined;
    return { kind: 'retry', status, error: `http_${status}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }

  private async fail(record: PendingDelivery, reason: DeadReason, error: string): Promise<void> {
    const dead = { ...record, body: redactBody(record.eventType, record.body), deadAt: this.now(), reason, lastError: error };
    try {
      await writeAtomic(this.deadDir, `${record.deliveryId}.json`, JSON.stringify(dead));
    } catch (err) {
      this.log.error({ sessionId: record.sessionId, deliveryId: record.deliveryId, err }, 'could not write the dead webhook delivery');
    }
    this.log.error(
      { sessionId: record.sessionId, clientId: record.clientId, eventType: record.eventType, deliveryId: record.deliveryId, attempts: record.attempts, status: record.lastStatus, reason, error },
      'webhook delivery failed for good: moved to dead/',
    );
    await this.settle(record, WEBHOOK_EVIDENCE.failed, { reason, error });
  }

  /** Records the outcome in the session's evidence, then removes the pending file. */
  private async settle(record: PendingDelivery, type: string, extra: Record<string, string>): Promise<void> {
    try {
      await this.evidence.append({
        sessionId: record.sessionId,
        type,
        actor: 'system',
        payload: {
          eventType: record.eventType,
          eventId: record.eventId,
          deliveryId: record.deliveryId,
          clientId: record.clientId,
          attempts: record.attempts,
          status: record.lastStatus,
          ...extra,
        },
      });
    } catch (err) {
      this.log.error({ sessionId: record.sessionId, deliveryId: record.deliveryId, err }, 'could not record the webhook outcome in evidence');
    }
    try {
      await fs.rm(path.join(this.pendingDir, `${record.deliveryId}.json`), { force: true });
      await fsyncDir(this.pendingDir);
    } catch (err) {
      // Left on disk, it is sent again at the next start: the receiver dedupes on the delivery id.
      this.log.error({ sessionId: record.sessionId, deliveryId: record.deliveryId, err }, 'could not remove the settled webhook delivery');
    } finally {
      this.records.delete(record.deliveryId);
      this.notifyIdle();
    }
  }

  private notifyIdle(): void {
    if (this.records.size > 0 && !this.closed) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
