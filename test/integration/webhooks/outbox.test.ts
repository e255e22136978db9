import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  backoffDelay,
  DELIVERY_HEADER,
  EVENT_HEADER,
  parseRetryAfter,
  pendingDeliverySchema,
  SIGNATURE_HEADER,
  signWebhook,
  verifyWebhookSignature,
  WebhookEventError,
  WebhookOutbox,
  type WebhookOutboxOptions,
} from '../../../src/webhooks/index.ts';
import { captureLogger, openTestLedger, SECRET, startReceiver, tempDataDir, type Receiver, type TestLedger } from './helpers.ts';

const CLIENT = 'bank-a';
let ledger: TestLedger;
let receiver: Receiver | undefined;
const outboxes: WebhookOutbox[] = [];

beforeEach(async () => {
  ledger = await openTestLedger();
});
afterEach(async () => {
  for (const o of outboxes.splice(0)) await o.close();
  await receiver?.close();
  receiver = undefined;
  await ledger.close();
});

function options(url: string, over: Partial<WebhookOutboxOptions> = {}): WebhookOutboxOptions {
  return {
    dataDir: over.dataDir ?? tempDataDir(),
    endpoints: [{ clientId: CLIENT, url, secret: SECRET }],
    maxAttempts: 5,
    retryBaseMs: 10,
    retryMaxMs: 5000,
    timeoutMs: 5000,
    concurrency: 4,
    ...over,
  };
}

async function open(opts: WebhookOutboxOptions, log = captureLogger().log): Promise<WebhookOutbox> {
  const o = await WebhookOutbox.open(opts, ledger.sink, log);
  outboxes.push(o);
  return o;
}

async function decided(sessionId: string) {
  return { type: 'session.decided' as const, data: { sessionId, customerRef: 'cust-42', decision: 'approved' as const, reason: 'identity_verified', record: await ledger.record(sessionId) } };
}

const pendingFiles = (dataDir: string) => readdirSync(path.join(dataDir, 'webhooks', 'pending'));
const deadFiles = (dataDir: string) => readdirSync(path.join(dataDir, 'webhooks', 'dead'));
const webhookEvidence = (sessionId: string) => ledger.entries(sessionId).filter((e) => e.type.startsWith('webhook.'));

describe('signatures', () => {
  it('verify with the shared secret only, for the exact body, within the replay window', () => {
    const body = '{"id":"x","type":"session.decided"}';
    const header = signWebhook(SECRET, body, 1_800_000_000);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, header, body, { nowS: 1_800_000_100 })).toEqual({ ok: true, timestamp: 1_800_000_000 });
    expect(verifyWebhookSignature(SECRET, header, Buffer.from(body), { nowS: 1_800_000_000 })).toMatchObject({ ok: true });
    expect(verifyWebhookSignature(SECRET, header, body + ' ', { nowS: 1_800_000_000 })).toEqual({ ok: false, error: 'signature_mismatch' });
    expect(verifyWebhookSignature('another-secret-0123456789abcdef0123', header, body, { nowS: 1_800_000_000 })).toEqual({ ok: false, error: 'signature_mismatch' });
    expect(verifyWebhookSignature(SECRET, header, body, { nowS: 1_800_000_301 })).toEqual({ ok: false, error: 'timestamp_out_of_window' });
    expect(verifyWebhookSignature(SECRET, header, body, { nowS: 1_800_000_301, toleranceS: 600 })).toMatchObject({ ok: true });
    // A rotated secret: two v1 values, one of them right.
    const other = signWebhook('old-secret-0123456789abcdef0123456789', body, 1_800_000_000).split(',')[1];
    expect(verifyWebhookSignature(SECRET, `${header},${other}`, body, { nowS: 1_800_000_000 })).toMatchObject({ ok: true });
    for (const bad of [undefined, '', 'v1=abc', 't=1800000000', `t=abc,${header.split(',')[1]}`, 't=1800000000,v1=zz', `${header},t=1800000001`, 'garbage']) {
      expect(verifyWebhookSignature(SECRET, bad, body, { nowS: 1_800_000_000 }), String(bad)).toEqual({ ok: false, error: 'malformed_header' });
    }
  });

  it('backoff doubles with jitter up to the cap; Retry-After reads seconds and HTTP dates', () => {
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, 1000, 600_000, 1))).toEqual([1000, 2000, 4000, 8000]);
    expect(backoffDelay(1, 1000, 600_000, 0)).toBe(500);
    expect(backoffDelay(12, 1000, 600_000, 1)).toBe(600_000);
    expect(backoffDelay(500, 1000, 600_000, 0.5)).toBe(450_000);
    expect(parseRetryAfter('2', 0)).toBe(2000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(parseRetryAfter(new Date(1000).toUTCString(), 4000)).toBe(0);
    expect(parseRetryAfter('soon', 0)).toBeUndefined();
    expect(parseRetryAfter(null, 0)).toBeUndefined();
  });
});

describe('webhook outbox', () => {
  it('delivers a signed session.decided that the receiver verifies, and records webhook.delivered', async () => {
    receiver = await startReceiver();
    const opts = options(receiver.url);
    const outbox = await open(opts);
    const sessionId = `s-${randomUUID()}`;
    const result = await outbox.enqueue(CLIENT, await decided(sessionId));
    expect(result).toMatchObject({ status: 'queued' });
    await outbox.whenIdle();

    expect(receiver.requests).toHaveLength(1);
    const req = receiver.requests[0]!;
    const check = verifyWebhookSignature(SECRET, req.headers[SIGNATURE_HEADER.toLowerCase()] as string, req.rawBody);
    expect(check).toMatchObject({ ok: true });
    expect(verifyWebhookSignature(SECRET, req.headers[SIGNATURE_HEADER.toLowerCase()] as string, req.rawBody.replace('approved', 'rejected'))).toEqual({ ok: false, error: 'signature_mismatch' });
    expect(req.headers[EVENT_HEADER.toLowerCase()]).toBe('session.decided');
    expect(req.headers[DELIVERY_HEADER.toLowerCase()]).toBe(result.status === 'queued' ? result.deliveryId : '');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.body).toMatchObject({ id: result.status === 'queued' ? result.eventId : '', type: 'session.decided', data: { sessionId, customerRef: 'cust-42', decision: 'approved', reason: 'identity_verified' } });
    expect(new Date(req.body.createdAt).toISOString()).toBe(req.body.createdAt);
    expect((req.body.data.record as { format: string }).format).toBe('videoteller-record');

    expect(pendingFiles(opts.dataDir)).toEqual([]);
    const ev = webhookEvidence(sessionId);
    expect(ev.map((e) => e.type)).toEqual(['webhook.delivered']);
    expect(ev[0]!.payload).toMatchObject({ eventType: 'session.decided', deliveryId: req.headers[DELIVERY_HEADER.toLowerCase()], attempts: 1, status: 200, clientId: CLIENT });
    expect(JSON.stringify(ev)).not.toContain('jws');
  });

  it('retries 500, 500 then succeeds once, with the same delivery id on every attempt', async () => {
    receiver = await startReceiver((r) => ({ status: r.n <= 2 ? 500 : 200 }));
    const outbox = await open(options(receiver.url));
    const sessionId = `s-${randomUUID()}`;
    const result = await outbox.enqueue(CLIENT, await decided(sessionId));
    await outbox.whenIdle();

    expect(receiver.requests).toHaveLength(3);
    const ids = new Set(receiver.requests.map((r) => r.headers[DELIVERY_HEADER.toLowerCase()]));
    expect([...ids]).toEqual([result.status === 'queued' ? result.deliveryId : 'x']);
    expect(new Set(receiver.requests.map((r) => r.rawBody)).size).toBe(1);
    for (const r of receiver.requests) expect(verifyWebhookSignature(SECRET, r.headers[SIGNATURE_HEADER.toLowerCase()] as string, r.rawBody)).toMatchObject({ ok: true });
    const ev = webhookEvidence(sessionId);
    expect(ev.map((e) => e.type)).toEqual(['webhook.delivered']);
    expect(ev[0]!.payload).toMatchObject({ attempts: 3, status: 200 });
  });

  it("honours Retry-After on 429: a later 500's quick retry overtakes it, and the recorded wait is the receiver's", async () => {
    const slow = `s-slow-${randomUUID()}`;
    const fast = `s-fast-${randomUUID()}`;
    const seen = new Map<string, number>();
    receiver = await startReceiver((r) => {
      const sid = r.body.data.sessionId as string;
      const n = (seen.get(sid) ?? 0) + 1;
      seen.set(sid, n);
      if (n > 1) return { status: 200 };
      return sid === slow ? { status: 429, headers: { 'retry-after': '1' } } : { status: 500 };
    });
    const opts = options(receiver.url, { concurrency: 1 });
    const outbox = await open(opts);
    const a = await outbox.enqueue(CLIENT, await decided(slow));
    await receiver.waitFor(1);
    await outbox.enqueue(CLIENT, await decided(fast));
    await receiver.waitFor(3);
    // The 429'd delivery is still waiting: its file says when, as the receiver asked.
    const order = receiver.requests.map((r) => r.body.data.sessionId);
    expect(order).toEqual([slow, fast, fast]);
    const file = JSON.parse(readFileSync(path.join(opts.dataDir, 'webhooks', 'pending', `${a.status === 'queued' ? a.deliveryId : ''}.json`), 'utf8'));
    const pending = pendingDeliverySchema.parse(file);
    expect(pending).toMatchObject({ attempts: 1, lastStatus: 429, lastError: 'http_429' });
    expect(pending.nextAttemptAt - pending.lastAttemptAt!).toBeGreaterThanOrEqual(1000);
    await outbox.whenIdle();
    expect(receiver.requests.map((r) => r.body.data.sessionId)).toEqual([slow, fast, fast, slow]);
    expect(webhookEvidence(slow)[0]!.payload).toMatchObject({ attempts: 2, status: 200 });
  });

  it('a permanent 400 goes to dead/ after one attempt, with webhook.failed evidence', async () => {
    receiver = await startReceiver(() => ({ status: 400 }));
    const opts = options(receiver.url);
    const outbox = await open(opts);
    const sessionId = `s-${randomUUID()}`;
    const result = await outbox.enqueue(CLIENT, await decided(sessionId));
    await outbox.whenIdle();
    expect(receiver.requests).toHaveLength(1);
    expect(pendingFiles(opts.dataDir)).toEqual([]);
    const id = result.status === 'queued' ? result.deliveryId : '';
    expect(deadFiles(opts.dataDir)).toEqual([`${id}.json`]);
    const dead = JSON.parse(readFileSync(path.join(opts.dataDir, 'webhooks', 'dead', `${id}.json`), 'utf8'));
    expect(dead).toMatchObject({ deliveryId: id, reason: 'permanent', lastStatus: 400, attempts: 1 });
    const ev = webhookEvidence(sessionId);
    expect(ev.map((e) => e.type)).toEqual(['webhook.failed']);
    expect(ev[0]!.payload).toMatchObject({ eventType: 'session.decided', deliveryId: id, attempts: 1, status: 400, reason: 'permanent', error: 'http_400' });
  });

  it('408, 429 and 5xx are retried until the attempts run out, then dead (exhausted)', async () => {
    const statuses = [408, 429, 503];
    receiver = await startReceiver((r) => ({ status: statuses[(r.n - 1) % 3]! }));
    const opts = options(receiver.url, { maxAttempts: 3 });
    const outbox = await open(opts);
    const sessionId = `s-${randomUUID()}`;
    await outbox.enqueue(CLIENT, await decided(sessionId));
    await outbox.whenIdle();
    expect(receiver.requests).toHaveLength(3);
    expect(webhookEvidence(sessionId).map((e) => [e.type, e.payload.reason, e.payload.attempts, e.payload.status])).toEqual([['webhook.failed', 'exhausted', 3, 503]]);
  });

  it('a receiver that never answers times out per attempt', async () => {
    receiver = await startReceiver(() => ({ status: 0, hang: true }));
    const outbox = await open(options(receiver.url, { maxAttempts: 2, timeoutMs: 200 }));
    const sessionId = `s-${randomUUID()}`;
    await outbox.enqueue(CLIENT, await decided(sessionId));
    await outbox.whenIdle();
    expect(receiver.requests).toHaveLength(2);
    expect(webhookEvidence(sessionId)[0]!.payload).toMatchObject({ reason: 'exhausted', error: 'timeout', status: null, attempts: 2 });
  });

  it('keeps no more than `concurrency` requests in flight', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    receiver = await startReceiver(async () => {
      await gate;
      return { status: 204 };
    });
    const outbox = await open(options(receiver.url, { concurrency: 2 }));
    for (let i = 0; i < 5; i++) await outbox.enqueue(CLIENT, await decided(`s-${i}-${randomUUID()}`));
    await receiver.waitFor(2);
    // Give the outbox every chance to overshoot before releasing.
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.requests).toHaveLength(2);
    release();
    await outbox.whenIdle();
    expect(receiver.requests).toHaveLength(5);
    expect(receiver.maxInFlight).toBe(2);
  });

  it('a delivery pending at a restart is delivered by the next outbox on the same folder', async () => {
    receiver = await startReceiver();
    const dataDir = tempDataDir();
    const first = await open(options(receiver.url, { dataDir }));
    const sessionId = `s-${randomUUID()}`;
    const result = await first.enqueue(CLIENT, await decided(sessionId));
    // Closed before its first attempt could start: only the file remains.
    await first.close();
    const id = result.status === 'queued' ? result.deliveryId : '';
    expect(pendingFiles(dataDir)).toEqual([`${id}.json`]);
    expect(statSync(path.join(dataDir, 'webhooks', 'pending', `${id}.json`)).mode & 0o777).toBe(0o600);
    expect(receiver.requests).toHaveLength(0);

    const second = await open(options(receiver.url, { dataDir }));
    await second.whenIdle();
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]!.headers[DELIVERY_HEADER.toLowerCase()]).toBe(id);
    expect(pendingFiles(dataDir)).toEqual([]);
    expect(webhookEvidence(sessionId).map((e) => e.type)).toEqual(['webhook.delivered']);
  });

  it('an attempt in flight at shutdown is aborted, stays pending and is sent again (same delivery id) after the restart', async () => {
    receiver = await startReceiver((r) => (r.n === 1 ? { status: 0, hang: true } : { status: 200 }));
    const dataDir = tempDataDir();
    const first = await open(options(receiver.url, { dataDir }));
    const sessionId = `s-${randomUUID()}`;
    await first.enqueue(CLIENT, await decided(sessionId));
    await receiver.waitFor(1);
    await first.close();
    expect(pendingFiles(dataDir)).toHaveLength(1);
    expect(webhookEvidence(sessionId)).toEqual([]);

    const second = await open(options(receiver.url, { dataDir }));
    await second.whenIdle();
    expect(receiver.requests).toHaveLength(2);
    expect(receiver.requests[1]!.headers[DELIVERY_HEADER.toLowerCase()]).toBe(receiver.requests[0]!.headers[DELIVERY_HEADER.toLowerCase()]);
    expect(webhookEvidence(sessionId).map((e) => [e.type, e.payload.attempts])).toEqual([['webhook.delivered', 1]]);
  });

  it('corrupt pending files go to dead/ with a log line; the good ones are still delivered', async () => {
    receiver = await startReceiver();
    const dataDir = tempDataDir();
    const first = await open(options(receiver.url, { dataDir }));
    const sessionId = `s-${randomUUID()}`;
    await first.enqueue(CLIENT, await decided(sessionId));
    await first.close();
    const pendingDir = path.join(dataDir, 'webhooks', 'pending');
    const [good] = pendingFiles(dataDir);
    const truncated = `${randomUUID()}.json`;
    writeFileSync(path.join(pendingDir, truncated), '{"version":1,"deliveryId":');
    const wrongShape = `${randomUUID()}.json`;
    writeFileSync(path.join(pendingDir, wrongShape), JSON.stringify({ version: 1, deliveryId: 'nope' }));
    const tampered = `${randomUUID()}.json`;
    const goodRecord = JSON.parse(readFileSync(path.join(pendingDir, good!), 'utf8'));
    writeFileSync(path.join(pendingDir, tampered), JSON.stringify({ ...goodRecord, deliveryId: tampered.slice(0, 36), body: goodRecord.body.replace(sessionId, 's-other') }));
    writeFileSync(path.join(pendingDir, 'notes.txt'), 'hello');
    writeFileSync(path.join(pendingDir, '.half-written.json.abc.tmp'), '{');

    const { log, lines } = captureLogger();
    const second = await open(options(receiver.url, { dataDir }), log);
    await second.whenIdle();
    expect(receiver.requests).toHaveLength(1);
    expect(pendingFiles(dataDir)).toEqual([]);
    const dead = deadFiles(dataDir).sort();
    expect(dead).toHaveLength(4);
    for (const name of [truncated, wrongShape, tampered, 'notes.txt']) expect(dead.some((d) => d.startsWith(`${name}.`) && d.endsWith('.corrupt'))).toBe(true);
    expect(lines.filter((l) => l.includes('corrupt pending webhook delivery moved to dead/'))).toHaveLength(4);
  });

  it('otp.requested: the code reaches the receiver and nothing else (not logs, evidence or the dead copy); it stops once expired', async () => {
    receiver = await startReceiver(() => ({ status: 503 }));
    const { log, lines } = captureLogger();
    const opts = options(receiver.url, { retryBaseMs: 1000 });
    const outbox = await open(opts, log);
    const sessionId = `s-${randomUUID()}`;
    const code = '904317';
    const result = await outbox.enqueue(CLIENT, { type: 'otp.requested', data: { sessionId, customerRef: 'cust-42', code, expiresAt: Date.now() + 300 } });
    await outbox.whenIdle();
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]!.body.data).toMatchObject({ code, sessionId });
    expect(receiver.requests[0]!.headers[EVENT_HEADER.toLowerCase()]).toBe('otp.requested');
    const id = result.status === 'queued' ? result.deliveryId : '';
    const deadText = readFileSync(path.join(opts.dataDir, 'webhooks', 'dead', `${id}.json`), 'utf8');
    expect(JSON.parse(deadText)).toMatchObject({ reason: 'expired', attempts: 1 });
    expect(JSON.parse(JSON.parse(deadText).body).data.code).toBe('[redacted]');
    expect(deadText).not.toContain(code);
    const ev = webhookEvidence(sessionId);
    expect(ev.map((e) => [e.type, e.payload.reason])).toEqual([['webhook.failed', 'expired']]);
    expect(JSON.stringify(ledger.entries())).not.toContain(code);
    expect(lines.some((l) => l.includes('webhook queued'))).toBe(true);
    expect(lines.some((l) => l.includes('webhook delivery failed for good'))).toBe(true);
    // As a token of its own: the lines' epoch-ms times are digit runs that could hold it by chance.
    expect(lines.join('')).not.toMatch(new RegExp(`(?<![0-9])${code}(?![0-9])`));
  });

  it('skips with a log line when no webhook is configured, and refuses malformed events before writing anything', async () => {
    const { log, lines } = captureLogger();
    const dataDir = tempDataDir();
    const outbox = await open({ ...options('http://127.0.0.1:9/none', { dataDir }), endpoints: [] }, log);
    expect(outbox.canDeliver(CLIENT)).toBe(false);
    expect(await outbox.enqueue(CLIENT, await decided('s-1'))).toEqual({ status: 'skipped', reason: 'no_webhook' });
    expect(lines.some((l) => l.includes('no webhook configured for this client'))).toBe(true);
    expect(pendingFiles(dataDir)).toEqual([]);

    receiver = await startReceiver();
    const withHook = await open(options(receiver.url, { dataDir }));
    const bad: unknown[] = [
      { type: 'otp.requested', data: { sessionId: 's-1', customerRef: 'c', code: '12345', expiresAt: Date.now() } },
      { type: 'otp.requested', data: { sessionId: 's-1', customerRef: 'c', code: '123456', expiresAt: Date.now(), extra: 1 } },
      { type: 'session.decided', data: { sessionId: 's-1', customerRef: 'c', decision: 'approved', reason: 'x' } },
      { type: 'session.deleted', data: {} },
      { type: 'session.decided', data: { ...(await decided('s-1')).data, sessionId: 's 1' } },
    ];
    for (const ev of bad) await expect(withHook.enqueue(CLIENT, ev as never), JSON.stringify(ev).slice(0, 80)).rejects.toBeInstanceOf(WebhookEventError);
    await expect(withHook.enqueue(CLIENT, bad[0] as never)).rejects.toThrow(/^data\.code: /);
    expect(pendingFiles(dataDir)).toEqual([]);
    expect(existsSync(path.join(dataDir, 'webhooks', 'dead'))).toBe(true);
  });
});
