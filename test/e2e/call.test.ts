/**
 * End to end, in headless Chromium: a customer on a phone-sized page with a fake camera (a real
 * face) and a teller console in a second browser context make a video call through the real
 * server and mediasoup. Both sides must decode the other's video, the teller's picture must not be
 * black, and after the hang-up both pages show the end and the media router is gone.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyRecord } from '../../src/ledger/index.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { artifactsDir, buildPages, callStats, launchChromium, makeFaceY4m, probeVideo, tempDir, waitForDecodedFrames } from './browser.ts';

const tid = (id: string) => `[data-testid="${id}"]`;

let server: TestServer;
let browser: Browser;
let workDir: string;
const contexts: BrowserContext[] = [];
const shots = artifactsDir();

async function newPage(kind: 'phone' | 'desktop'): Promise<Page> {
  const context = await browser.newContext(
    kind === 'phone'
      ? { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }
      : { viewport: { width: 1280, height: 800 } },
  );
  await context.grantPermissions(['camera', 'microphone'], { origin: server.url });
  contexts.push(context);
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') console.log(`[${kind} ${msg.type()}] ${msg.text()}`);
  });
  page.on('pageerror', (err) => console.log(`[${kind} pageerror] ${err.message}`));
  return page;
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(shots, `${name}.png`) });
}

async function createSession(): Promise<{ sessionId: string; customerToken: string; joinUrl: string; expiresAt: number }> {
  const res = await fetch(`${server.url}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': server.apiKey },
    // A consultation: no one-time code and no co-signature (config/policy.yaml); e2e/identity.test.ts runs an account opening.
    body: JSON.stringify({ businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-0001' }),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { sessionId: string; customerToken: string; joinUrl: string; expiresAt: number };
  expect(body.joinUrl).toMatch(/\/customer\/#token=/);
  return body;
}

async function routersOpen(): Promise<number> {
  const workers = await server.app.media.stats();
  return workers.reduce((n, w) => n + w.routers, 0);
}

/** Waits for the page's call view; fails at once, with the page's reason, if the call ends first. */
async function waitForCallView(page: Page, who: string): Promise<void> {
  let done = false;
  const ended = new Promise<never>((_, reject) => {
    page.waitForSelector(tid('call-ended'), { state: 'visible', timeout: 30_000 }).then(
      async () => {
        if (!done) reject(new Error(`${who}: the call ended before its media started: ${await page.textContent('#ended-reason')}`));
      },
      () => {},
    );
  });
  try {
    await Promise.race([page.waitForSelector(tid('remote-video'), { state: 'visible' }), ended]);
    // The call view shows at call:start; the call may still end while media is being set up.
    await Promise.race([waitForDecodedFrames(page, 1), ended]);
  } finally {
    done = true;
  }
}

async function tellerSignIn(page: Page): Promise<void> {
  await page.goto(`${server.url}/teller/`);
  await page.fill(tid('username'), server.tellerLogin.username);
  await page.fill(tid('password'), server.tellerLogin.password);
  await page.click(tid('login'));
  await page.waitForSelector(`${tid('teller-state')}[data-state="away"], ${tid('teller-state')}[data-state="offline"]`);
}

beforeAll(async () => {
  workDir = tempDir('videoteller-e2e-');
  const y4m = makeFaceY4m(workDir);
  await buildPages();
  server = await startTestServer();
  browser = await launchChromium(y4m);
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await server?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  console.log(`e2e screenshots in ${shots}`);
});

describe('a video call between the customer page and the teller console', () => {
  it('connects both sides through mediasoup, shows real video both ways, records the call, and closes the router when the teller decides', async () => {
    const teller = await newPage('desktop');
    await tellerSignIn(teller);
    await screenshot(teller, 'teller-1-signed-in');

    // The customer joins the queue while no teller is available.
    const { joinUrl, sessionId } = await createSession();
    const customer = await newPage('phone');
    await customer.goto(joinUrl);
    await customer.waitForSelector(tid('consent'));
    expect(new URL(customer.url()).hash).toBe(''); // the token left the address bar
    await expect(customer.textContent('#view-consent')).resolves.toMatch(/recorded/);
    await expect(customer.textContent('#view-consent')).resolves.toMatch(/photo on your ID document/);
    await screenshot(customer, 'customer-1-consent');
    await customer.click(tid('consent'));
    await customer.waitForSelector(`${tid('join')}:not([disabled])`);
    await screenshot(customer, 'customer-2-check');
    await customer.click(tid('join'));
    await customer.waitForSelector(tid('queue-position'), { state: 'visible' });
    await customer.waitForFunction((sel) => /^\d+$/.test(document.querySelector(sel)?.textContent ?? ''), tid('queue-position'));
    expect(await customer.textContent(tid('queue-position'))).toBe('1');
    expect(await customer.textContent(tid('queue-wait'))).toMatch(/minute/);
    await screenshot(customer, 'customer-3-queue');

    // The teller becomes available, gets the offer with its countdown, accepts.
    await teller.click(tid('available'));
    await teller.waitForSelector(tid('offer'), { state: 'visible' });
    expect(await teller.textContent(tid('offer-business-type'))).toBe('Consultation');
    expect(await teller.textContent(tid('offer-language'))).toBe('English');
    expect(await teller.textContent(tid('offer-countdown'))).toMatch(/^\d+:\d\d$/);
    await screenshot(teller, 'teller-2-offer');
    await teller.click(tid('accept'));

    await Promise.all([waitForCallView(customer, 'customer'), waitForCallView(teller, 'teller')]);
    expect(await routersOpen()).toBe(1);

    // Both sides decode the other's video, and keep decoding.
    const [c1, t1] = await Promise.all([waitForDecodedFrames(customer, 5), waitForDecodedFrames(teller, 5)]);
    await new Promise((r) => setTimeout(r, 2000));
    const [cs, ts] = await Promise.all([callStats(customer), callStats(teller)]);
    const c2 = cs?.inbound.video?.framesDecoded ?? 0;
    const t2 = ts?.inbound.video?.framesDecoded ?? 0;
    console.log(`framesDecoded customer ${c1} → ${c2}, teller ${t1} → ${t2}; teller receives ${ts?.inbound.video?.frameWidth}x${ts?.inbound.video?.frameHeight}`);
    expect(c2).toBeGreaterThan(c1);
    expect(t2).toBeGreaterThan(t1);
    expect(cs?.inbound.audio?.bytesReceived ?? 0).toBeGreaterThan(0);
    expect(ts?.inbound.audio?.bytesReceived ?? 0).toBeGreaterThan(0);

    // The teller sees the customer's face, not a black or uniform picture.
    await teller.waitForFunction((sel) => (document.querySelector<HTMLVideoElement>(sel)?.videoWidth ?? 0) > 0, tid('remote-video'));
    const picture = await probeVideo(teller, tid('remote-video'));
    console.log(`teller's remote video: ${JSON.stringify(picture)}`);
    expect(picture.width).toBeGreaterThanOrEqual(320);
    expect(picture.meanLuma).toBeGreaterThan(40);
    expect(picture.stdLuma).toBeGreaterThan(15);
    const customerPicture = await probeVideo(customer, tid('remote-video'));
    expect(customerPicture.meanLuma).toBeGreaterThan(40);
    await screenshot(customer, 'customer-4-call');
    await screenshot(teller, 'teller-3-call');

    // The teller approves: the decision ends the call, the recording is stored, the server signs the
    // verification record naming it, and the bank's system fetches the record.
    await teller.click(tid('approve'));
    await teller.waitForSelector(`${tid('decision-result')}[data-decision="approved"][data-status="issued"]`, { timeout: 30_000 });
    expect(await teller.textContent(tid('decision-result'))).toMatch(/record .* signed/);
    await customer.waitForSelector(tid('call-ended'), { state: 'visible' });
    await teller.waitForSelector(tid('call-ended'), { state: 'visible' });
    expect(await customer.textContent('#ended-reason')).toMatch(/completed your identification/);
    expect(await customer.isVisible(tid('connection-banner'))).toBe(false);
    const recordRes = await fetch(`${server.url}/api/sessions/${sessionId}/record`, { headers: { 'x-api-key': server.apiKey } });
    expect(recordRes.status).toBe(200);
    const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
    const verified = await verifyRecord(await recordRes.json(), { keys: jwks, origin: server.app.config.LEDGER_ORIGIN });
    expect(verified).toMatchObject({ ok: true, claims: { decision: 'approved', sessionId, tellerId: 't-alice' } });
    await screenshot(teller, 'teller-3b-approved');
    await screenshot(customer, 'customer-5-ended');

    // The recording: both participants' audio and video, stored by its SHA-256, named in the record.
    const entries = await server.app.ledger.entriesOf(sessionId);
    const stored = entries.find((e) => e.type === 'recording.stored');
    expect(stored, JSON.stringify(entries.find((e) => e.type === 'recording.failed')?.payload)).toBeDefined();
    const rec = stored!.payload as { sha256: string; durationMs: number; tracks: { participant: string; kind: string }[] };
    expect(rec.tracks.map((t) => `${t.participant}/${t.kind}`).sort()).toEqual(['customer/audio', 'customer/video', 'teller/audio', 'teller/video']);
    expect(rec.durationMs).toBeGreaterThan(1000);
    expect(verified.ok && verified.claims.evidence.recording).toMatchObject({ sha256: rec.sha256, durationMs: rec.durationMs });
    const file = await server.app.identity.blobs.get(rec.sha256); // verifies the digest
    expect(file.subarray(0, 4)).toEqual(Buffer.from([0x1a, 0x45, 0xdf, 0xa3])); // EBML: WebM/Matroska
    await expect.poll(routersOpen, { timeout: 5000 }).toBe(0);
    const workers = await server.app.media.stats();
    expect(workers.reduce((n, w) => n + w.transports, 0)).toBe(0);

    // The customer rates the call (issue 6): a ledger entry, and the teller's satisfaction on the supervisor board.
    await customer.waitForSelector(tid('rating'), { state: 'visible' });
    expect(await customer.isDisabled(tid('rating-submit'))).toBe(true);
    await customer.click('label[for="score-4"]');
    await customer.fill(tid('rating-comment'), 'Clear and quick.');
    await screenshot(customer, 'customer-6-rating');
    await customer.click(tid('rating-submit'));
    await customer.waitForSelector(tid('rating-thanks'), { state: 'visible' });
    const rating = (await server.app.ledger.entriesOf(sessionId)).find((e) => e.type === 'customer.rating');
    expect(rating).toMatchObject({ actor: 'customer', payload: { score: 4, comment: 'Clear and quick.', tellerId: 't-alice' } });
    const supervisor = await newPage('desktop');
    await supervisor.goto(`${server.url}/supervisor/`);
    await supervisor.fill(tid('username'), 'sam');
    await supervisor.fill(tid('password'), 'sam-demo-pass');
    await supervisor.click(tid('login'));
    const aliceRow = `${tid('teller-row')}[data-teller-id="t-alice"]`;
    await supervisor.waitForSelector(`${aliceRow} [data-field="satisfaction"][data-count="1"]`);
    expect(await supervisor.getAttribute(`${aliceRow} [data-field="satisfaction"]`, 'data-average')).toBe('4');
    expect(await supervisor.textContent(tid('board-answered'))).toBe('1');
    await screenshot(supervisor, 'supervisor-1-board');
  });
});

describe('the customer page explains why it cannot connect', () => {
  it('shows token_invalid for an unknown token', async () => {
    const page = await newPage('phone');
    await page.goto(`${server.url}/customer/#token=not-a-real-token-0123456789`);
    await page.waitForSelector(tid('error'), { state: 'visible' });
    expect(await page.getAttribute(tid('error'), 'data-code')).toBe('token_invalid');
    expect(await page.textContent(tid('error'))).toMatch(/not valid/);
    await screenshot(page, 'customer-error-invalid');
  });

  it('shows token_expired for an expired link', async () => {
    const { sessionId, joinUrl } = await createSession();
    await server.app.store.updateSession(sessionId, (s) => ({ ...s, tokenExpiresAt: Date.now() - 1000 }));
    const page = await newPage('phone');
    await page.goto(joinUrl);
    await page.waitForSelector(tid('error'), { state: 'visible' });
    expect(await page.getAttribute(tid('error'), 'data-code')).toBe('token_expired');
    expect(await page.textContent(tid('error'))).toMatch(/expired/);
    await screenshot(page, 'customer-error-expired');
  });

  it('shows token_reused when the link is opened a second time elsewhere', async () => {
    const { joinUrl } = await createSession();
    const first = await newPage('phone');
    await first.goto(joinUrl);
    await first.waitForSelector(tid('consent'), { state: 'visible' });
    const second = await newPage('phone');
    await second.goto(joinUrl);
    await second.waitForSelector(tid('error'), { state: 'visible' });
    expect(await second.getAttribute(tid('error'), 'data-code')).toBe('token_reused');
    expect(await second.textContent(tid('error'))).toMatch(/already used/);
  });
});
