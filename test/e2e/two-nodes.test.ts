/**
 * Two server nodes, each its own process on its own port, sharing one Redis (state, socket.io
 * rooms, the cluster's requests and heartbeats), one PostgreSQL ledger and one blob folder:
 *
 * 1. A customer whose page is on node A and a teller whose console is on node B: the call's media
 *    live on B (the teller's node accepted the offer), the customer's media requests are forwarded
 *    from A to B, and the call connects with video both ways in Chromium. The teller's decision
 *    is signed, the recording stored, and the shared ledger verifies with the command-line tool.
 * 2. Node A is killed (SIGKILL) while two customers wait on it and a call has its media on it.
 *    Node B notices A's heartbeat has run out and takes over what A left: the call fails and its
 *    customer (on B) is told; one waiting page comes back through the load balancer to node B and
 *    is served there (video both ways); the other never comes back and, after its grace period,
 *    leaves the queue.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySessionEvidence } from '../../src/ledger/bundle.ts';
import { verifyRecord } from '../../src/ledger/index.ts';
import { startFailoverProxy, type FailoverProxy } from '../helpers/failover-proxy.ts';
import { startNodeProcess, type NodeProcess } from '../helpers/node-process.ts';
import { createSession, loginStaff, TEST_API_KEY } from '../helpers/server.ts';
import { next, outcome, request, SocketClients } from '../helpers/socket.ts';
import { dropSchema, freshSchema, TEST_DATABASE_URL } from '../integration/ledger/postgres-helpers.ts';
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from '../integration/store/redis-helpers.ts';
import { buildPages, launchChromium, makeFaceY4m, repoRoot, tempDir, waitForDecodedFrames } from './browser.ts';

const tid = (id: string) => `[data-testid="${id}"]`;
const prefix = testPrefix();
const schema = freshSchema('vt_two_nodes');

let workDir: string;
let a: NodeProcess;
let b: NodeProcess;
let proxy: FailoverProxy;
let browser: Browser;
const contexts: BrowserContext[] = [];
const sockets = new SocketClients(() => a.url);
const socketsOnB = new SocketClients(() => b.url);

async function newPage(origin: string, kind: 'phone' | 'desktop', name: string): Promise<Page> {
  const context = await browser.newContext(
    kind === 'phone' ? { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true } : { viewport: { width: 1280, height: 800 } },
  );
  await context.grantPermissions(['camera', 'microphone'], { origin });
  contexts.push(context);
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.log(`[${name} console] ${msg.text()}`);
  });
  page.on('pageerror', (err) => console.log(`[${name} pageerror] ${err.message}`));
  return page;
}

const bank = (node: NodeProcess) => ({ url: node.url, apiKey: TEST_API_KEY });

async function sessionState(node: NodeProcess, sessionId: string): Promise<string | undefined> {
  const res = await fetch(`${node.url}/api/sessions/${sessionId}`, { headers: { 'x-api-key': TEST_API_KEY } });
  return res.ok ? ((await res.json()) as { state: string }).state : `http_${res.status}`;
}

async function joinQueue(page: Page, joinUrl: string): Promise<void> {
  await page.goto(joinUrl);
  await page.click(tid('consent'));
  await page.waitForSelector(`${tid('join')}:not([disabled])`);
  await page.click(tid('join'));
  await page.waitForFunction((sel) => /^\d+$/.test(document.querySelector(sel)?.textContent ?? ''), tid('queue-position'));
}

/** Both pages show the call and decode the other's video, and keep decoding. */
async function expectVideoBothWays(customer: Page, teller: Page): Promise<void> {
  await Promise.all([customer.waitForSelector(tid('remote-video')), teller.waitForSelector(tid('remote-video'))]);
  const [c1, t1] = await Promise.all([waitForDecodedFrames(customer, 5), waitForDecodedFrames(teller, 5)]);
  const [c2, t2] = await Promise.all([waitForDecodedFrames(customer, c1 + 10), waitForDecodedFrames(teller, t1 + 10)]);
  expect(c2).toBeGreaterThan(c1);
  expect(t2).toBeGreaterThan(t1);
}

beforeAll(async () => {
  workDir = tempDir('videoteller-two-nodes-');
  const y4m = makeFaceY4m(workDir);
  await buildPages();
  const shared = {
    REDIS_URL: SHARED_REDIS_URL,
    REDIS_KEY_PREFIX: prefix,
    DATABASE_URL: TEST_DATABASE_URL,
    LEDGER_PG_SCHEMA: schema,
    LEDGER_KEYS_DIR: path.join(workDir, 'keys'),
    BLOB_DIR: path.join(workDir, 'blobs'),
    JWT_SECRET: 'two-nodes-e2e-secret-0123456789abcdefghijklmnop',
    OTP_SECRET: 'two-nodes-e2e-otp-secret-0123456789abcdefghijkl',
    API_KEYS: `test-bank:${TEST_API_KEY}`,
    CLUSTER_HEARTBEAT_MS: '300',
    RECONNECT_GRACE_MS: '3000',
    WRAP_UP_MS: '0',
  };
  mkdirSync(shared.LEDGER_KEYS_DIR, { recursive: true });
  // One node creates the ledger's schema and first key; the second joins them.
  a = await startNodeProcess('a', { ...shared, NODE_ID: 'node-a', RTC_MIN_PORT: '41000', RTC_MAX_PORT: '41999' });
  b = await startNodeProcess('b', { ...shared, NODE_ID: 'node-b', RTC_MIN_PORT: '42000', RTC_MAX_PORT: '42999' });
  proxy = await startFailoverProxy([a.port, b.port]);
  browser = await launchChromium(y4m);
}, 240_000);

afterAll(async () => {
  sockets.closeAll();
  socketsOnB.closeAll();
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await proxy?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  await deletePrefix(prefix);
  await dropSchema(schema).catch(() => {});
  // The nodes' logs stay for a look after a failure when KEEP_NODE_LOGS is set.
  for (const n of [a, b]) {
    if (!n) continue;
    if (process.env.KEEP_NODE_LOGS) console.log(`node ${n.name} log: ${n.logFile}`);
    else rmSync(n.dataDir, { recursive: true, force: true });
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('two nodes sharing Redis, PostgreSQL and a blob folder', () => {
  let teller: Page;

  it('connects a customer on node A with a teller on node B, video both ways; the record and the shared ledger verify', async () => {
    teller = await newPage(b.url, 'desktop', 'teller@B');
    await teller.goto(`${b.url}/teller/`);
    await teller.fill(tid('username'), 'alice');
    await teller.fill(tid('password'), 'alice-demo-pass');
    await teller.click(tid('login'));
    await teller.waitForSelector(`${tid('teller-state')}[data-state="away"]`);

    const first = await createSession(bank(a), { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-2N-1' });
    const customer = await newPage(a.url, 'phone', 'customer@A');
    await joinQueue(customer, `${a.url}/customer/#token=${first.customerToken}`);

    await teller.click(tid('available'));
    await teller.waitForSelector(tid('offer'), { state: 'visible' });
    await teller.click(tid('accept'));
    await expectVideoBothWays(customer, teller);

    await teller.click(tid('approve'));
    await teller.waitForSelector(`${tid('decision-result')}[data-decision="approved"][data-status="issued"]`, { timeout: 30_000 });
    await customer.waitForSelector(tid('call-ended'), { state: 'visible' });
    await customer.context().close();

    // Compliance replays the session from node A: every entry verifies, and the evidence says the
    // call's media were held by node B (the teller's node).
    const replay = await fetch(`${a.url}/api/compliance/sessions/${first.sessionId}`, { headers: { authorization: `Bearer ${await complianceToken(a)}` } });
    expect(replay.status).toBe(200);
    const report = await verifySessionEvidence(((await replay.json()) as { evidence: unknown }).evidence);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    const started = report.entries.find((e) => e.type === 'call.started');
    expect(started?.entry?.payload).toMatchObject({ node: 'node-b' });
    expect(report.entries.filter((e) => e.type === 'media.producer').map((e) => (e.entry?.payload as { participant: string }).participant).sort()).toEqual([
      'customer',
      'customer',
      'teller',
      'teller',
    ]);

    // The record, fetched from the other node, verifies against the shared keys.
    const record = await (await fetch(`${a.url}/api/sessions/${first.sessionId}/record`, { headers: { 'x-api-key': TEST_API_KEY } })).json();
    const jwks = await (await fetch(`${a.url}/.well-known/jwks.json`)).json();
    const verified = await verifyRecord(record, { keys: jwks, origin: 'videoteller.local/ledger' });
    expect(verified).toMatchObject({ ok: true, claims: { decision: 'approved', sessionId: first.sessionId } });
    // Recorded on B, into the shared blob folder, named in the record.
    const recording = verified.ok ? verified.claims.evidence.recording : undefined;
    expect(recording?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(readdirSync(path.join(workDir, 'blobs', recording!.sha256.slice(0, 2), recording!.sha256.slice(2, 4)))).toContain(recording!.sha256);

    // The teller goes away: the next customers wait.
    await teller.waitForSelector(`${tid('teller-state')}[data-state="available"]`);
    await teller.click(tid('available'));
    await teller.waitForSelector(`${tid('teller-state')}[data-state="away"]`);

    // The shared ledger, written by both nodes, verifies end to end with the command-line tool.
    const keysFile = path.join(workDir, 'jwks.json');
    writeFileSync(keysFile, JSON.stringify(jwks));
    const cli = spawnSync(process.execPath, [path.join(repoRoot, 'bin/videoteller.mjs'), 'verify', '--database-url', TEST_DATABASE_URL, '--pg-schema', schema, '--keys', keysFile, '--json'], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    expect(cli.status, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ ok: true });
  });

  it('takes over what a killed node left: its call fails and its customer is told; a waiting page that comes back is served, one that does not leaves the queue', async () => {
    // A call in progress whose media are on node A: Bob's console is on A, his customer's page on B.
    const bob = sockets.open('/teller', await loginStaff(a.url, 'bob', 'bob-demo-pass'));
    expect(await outcome(bob)).toEqual({ connected: true });
    const fourth = await createSession(bank(b), { businessType: 'consultation', language: 'fr', priority: 0, customerRef: 'CUST-2N-4' });
    const caller = socketsOnB.open('/customer', fourth.customerToken);
    expect(await outcome(caller)).toEqual({ connected: true });
    const offered = next(bob, 'offer:new');
    const started = next(caller, 'call:start');
    expect(await request(caller, 'queue:join', { consent: true })).toMatchObject({ ok: true });
    expect(await request(bob, 'teller:availability', { status: 'available' })).toMatchObject({ ok: true });
    const offer = (await offered) as { offerId: string; sessionId: string };
    expect(offer.sessionId).toBe(fourth.sessionId);
    expect(await request(bob, 'offer:accept', { offerId: offer.offerId })).toMatchObject({ ok: true });
    await started;
    // The customer's media request, sent to B, is answered by A, which holds the call.
    expect(await request(caller, 'media:capabilities', {})).toMatchObject({ ok: true, data: { rtpCapabilities: { codecs: expect.any(Array) } } });
    // Then two customers wait (Bob is busy, Alice away). Customer 2's page reaches the nodes through the load balancer (node A while it lives).
    const second = await createSession(bank(a), { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-2N-2' });
    const customer = await newPage(proxy.url, 'phone', 'customer@LB');
    await joinQueue(customer, `${proxy.url}/customer/#token=${second.customerToken}`);
    // Customer 3 is connected straight to node A and will not come back.
    const third = await createSession(bank(a), { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-2N-3' });
    const gone = sockets.open('/customer', third.customerToken);
    expect(await outcome(gone)).toEqual({ connected: true });
    expect(await request(gone, 'queue:join', { consent: true })).toMatchObject({ ok: true });
    expect(await sessionState(b, second.sessionId)).toBe('queued');
    expect(await sessionState(b, third.sessionId)).toBe('queued');
    const callEnded = next(caller, 'call:ended');

    await a.kill();

    // B takes over: the call whose media died with A fails, and its customer (on B) is told.
    expect(await callEnded).toMatchObject({ sessionId: fourth.sessionId, reason: 'failed' });
    expect(await sessionState(b, fourth.sessionId)).toBe('failed');

    // Node B notices A's heartbeat is gone, gives A's pages their grace period, and the one that
    // never came back leaves the queue. The other came back to B and still waits.
    await expect.poll(() => sessionState(b, third.sessionId), { timeout: 30_000, interval: 250 }).toBe('abandoned');
    await customer.waitForSelector(tid('connection-banner'), { state: 'hidden', timeout: 30_000 });
    expect(await sessionState(b, second.sessionId)).toBe('queued');

    await teller.click(tid('available'));
    await teller.waitForSelector(tid('offer'), { state: 'visible' });
    await teller.click(tid('accept'));
    await expectVideoBothWays(customer, teller);
    expect(await sessionState(b, second.sessionId)).toBe('in_call');
    await teller.click(tid('end-call'));
    await customer.waitForSelector(tid('call-ended'), { state: 'visible' });
    expect(await sessionState(b, second.sessionId)).toBe('ended');
  });
});

async function complianceToken(node: NodeProcess): Promise<string> {
  const res = await fetch(`${node.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'carol', password: 'carol-demo-pass' }),
  });
  if (!res.ok) throw new Error(`compliance login: ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}
