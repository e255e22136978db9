/**
 * End to end, in headless Chromium: a real call (the customer page with a fake camera playing a
 * real face that performs the liveness movements, the teller console), identity checks, document
 * capture, the teller's approval (which ends the call) and the stored recording; then the compliance page,
 * opened as a compliance officer, shows every entry verified, plays the recording (customer and
 * teller views: duration > 0 and time advances), shows the face-match chart and the liveness
 * challenges, and seeks when an entry is clicked. After one byte of one ledger entry is changed on
 * disk (with its frame CRC fixed, as someone who knows the format would), the page and
 * `videoteller verify-bundle` both show that entry failed and only that one.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FileLedger } from '../../src/ledger/file-ledger.ts';
import { FRAME_OVERHEAD, HEADER_BYTES, scanFrames } from '../../src/ledger/segments.ts';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { artifactsDir, buildPages, launchChromium, repoRoot, tempDir } from './browser.ts';
import { makeLivenessVideos, type LivenessVideos } from './fixtures/liveness-videos.ts';

const tid = (id: string) => `[data-testid="${id}"]`;
const CHALLENGES = ['turn_left', 'turn_right', 'move_closer'] as const;
const CLI = path.join(repoRoot, 'bin/videoteller.mjs');

let server: TestServer;
let workDir: string;
let videos: LivenessVideos;
let browser: Browser;
let sessionId: string;
let officer: Page;
const shots = artifactsDir();

beforeAll(async () => {
  workDir = tempDir('videoteller-e2e-compliance-');
  videos = makeLivenessVideos(path.join(workDir, 'videos'), { order: CHALLENGES });
  await buildPages();
  server = await startTestServer({
    IDENTITY_WORKERS: '1',
    LIVENESS_CHALLENGE_TYPES: CHALLENGES.join(','),
    LIVENESS_CHALLENGE_TIMEOUT_MS: '10000',
  });
  browser = await launchChromium(videos.moving);
}, 300_000);

afterAll(async () => {
  await browser?.close().catch(() => {});
  await server?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

async function page(kind: 'phone' | 'desktop'): Promise<Page> {
  const context = await browser.newContext(
    kind === 'phone' ? { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true } : { viewport: { width: 1400, height: 1000 } },
  );
  await context.grantPermissions(['camera', 'microphone'], { origin: server.url });
  const p = await context.newPage();
  p.on('pageerror', (err) => console.log(`[${kind} pageerror] ${err.message}`));
  return p;
}

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: repoRoot, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function waitForEntry(type: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await server.app.ledger.entriesOf(sessionId)).some((e) => e.type === type)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`no ${type} entry within ${timeoutMs} ms: ${(await server.app.ledger.entriesOf(sessionId)).map((e) => e.type).join(', ')}`);
}

async function downloadBundle(name: string): Promise<string> {
  const carol = await loginStaff(server.url, 'carol', 'carol-demo-pass');
  const res = await fetch(`${server.url}/api/compliance/sessions/${sessionId}/bundle`, { headers: { authorization: `Bearer ${carol}` } });
  expect(res.status).toBe(200);
  const file = path.join(workDir, name);
  writeFileSync(file, new Uint8Array(await res.arrayBuffer()));
  return file;
}

describe('compliance replay of a real call', () => {
  it('records a call decided by the teller', async () => {
    // A consultation: approved by the teller alone (no dual control, no one-time code in the policy).
    const created = await createSession(server, { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-REPLAY-1' });
    sessionId = created.sessionId;
    const put = await fetch(`${server.url}/api/sessions/${sessionId}/reference-photo`, {
      method: 'PUT',
      headers: { 'x-api-key': server.apiKey, 'content-type': 'image/jpeg' },
      body: new Uint8Array(readFileSync(videos.reference)),
    });
    expect(put.status).toBe(200);

    const teller = await page('desktop');
    await teller.goto(`${server.url}/teller/`);
    await teller.fill(tid('username'), server.tellerLogin.username);
    await teller.fill(tid('password'), server.tellerLogin.password);
    await teller.click(tid('login'));
    await teller.click(tid('available'));
    await teller.waitForSelector(`${tid('teller-state')}[data-state="available"]`);

    const customer = await page('phone');
    await customer.goto(created.joinUrl);
    await customer.click(tid('consent'));
    await customer.waitForSelector(`${tid('join')}:not([disabled])`);
    await customer.click(tid('join'));
    await teller.waitForSelector(`${tid('accept')}:not([disabled])`, { state: 'visible' });
    await teller.click(tid('accept'));
    await teller.waitForSelector(`${tid('match-decision')}[data-decision="match"]`, { timeout: 45_000 });

    await teller.click(tid('liveness-start'));
    await teller.waitForSelector(`${tid('liveness-status')}:is([data-status="passed"], [data-status="failed"])`, { timeout: 60_000 });
    expect(await teller.getAttribute(tid('liveness-status'), 'data-status')).toBe('passed');
    for (const c of ['hologram', 'personalisation', 'material', 'securityPrint']) await teller.check(tid(`doc-${c}`));
    await teller.click(tid('document-capture'));
    await teller.waitForSelector(`${tid('document-result')}:not([hidden])`);
    await teller.click(tid('approve'));
    await teller.waitForSelector(`${tid('decision-result')}[data-decision="approved"]`);
    // The decision ends the call: the recording is finished, stored and named in the record.
    await waitForEntry('recording.stored', 60_000);
    await waitForEntry('record.issued', 30_000);
    await teller.context().close();
    await customer.context().close();
  }, 240_000);

  it('the compliance page shows every entry verified, plays the recording, shows the chart and liveness, and seeks', async () => {
    officer = await page('desktop');
    await officer.goto(`${server.url}/compliance/`);
    await officer.fill(tid('username'), 'carol');
    await officer.fill(tid('password'), 'carol-demo-pass');
    await officer.click(tid('login'));
    const row = `${tid('session-row')}[data-session-id="${sessionId}"]`;
    await officer.waitForSelector(row);
    expect(await officer.textContent(`${row} td[data-decision]`)).toBe('approved');
    await officer.click(row);

    await officer.waitForSelector(`${tid('verify-result')}:not([data-state="running"])`, { timeout: 60_000 });
    const problems = await officer.$$eval(`${tid('verify-problems')} li`, (lis) => lis.map((li) => li.textContent));
    expect(problems).toEqual([]);
    expect(await officer.getAttribute(tid('verify-result'), 'data-state')).toBe('ok');
    const entries = await server.app.ledger.entriesOf(sessionId);
    const marks = await officer.$$eval(tid('timeline-entry'), (lis) => lis.map((li) => (li as HTMLElement).dataset.verified));
    expect(marks).toHaveLength(entries.length);
    expect(marks.every((m) => m === 'ok')).toBe(true);
    expect(await officer.getAttribute(tid('verify-record'), 'data-state')).toBe('ok');
    expect(await officer.getAttribute(tid('verify-blob-recording'), 'data-state')).toBe('ok');
    expect(await officer.getAttribute(tid('verify-blob-reference_photo'), 'data-state')).toBe('ok');
    expect(await officer.getAttribute(tid('verify-blob-document_photo'), 'data-state')).toBe('ok');

    // The chart has a point per face-match summary; liveness shows the three challenges passed.
    const summaries = entries.filter((e) => e.type === 'identity.match_summary').length;
    expect(summaries).toBeGreaterThan(0);
    expect(Number(await officer.getAttribute(tid('score-chart'), 'data-points'))).toBe(summaries);
    expect(await officer.$$eval(`${tid('liveness-challenges')} li`, (lis) => lis.map((li) => (li as HTMLElement).dataset.status))).toEqual(['passed', 'passed', 'passed']);
    expect(await officer.textContent(tid('decision-value'))).toMatch(/^approved \(identity_verified\) by t-alice/);

    // Both players have the recording; playing advances both.
    for (const v of ['video-customer', 'video-teller']) {
      await officer.waitForFunction((sel) => (document.querySelector(sel) as HTMLVideoElement).readyState >= 1, tid(v), { timeout: 30_000 });
      expect(await officer.$eval(tid(v), (el) => (el as HTMLVideoElement).duration)).toBeGreaterThan(0);
    }
    await officer.click(tid('play'));
    const t1 = await officer.$eval(tid('video-customer'), (el) => (el as HTMLVideoElement).currentTime);
    await officer.waitForFunction(
      ([sel, t]) => (document.querySelector(sel as string) as HTMLVideoElement).currentTime > (t as number) + 0.5,
      [tid('video-customer'), t1] as const,
      { timeout: 20_000 },
    );
    await officer.waitForFunction((sel) => (document.querySelector(sel) as HTMLVideoElement).currentTime > 0.5, tid('video-teller'), { timeout: 20_000 });
    await officer.screenshot({ path: path.join(shots, 'compliance-1-verified.png'), fullPage: true });
    await officer.click(tid('play')); // pause

    // Clicking an entry seeks both players to its moment.
    const target = officer.locator(`${tid('timeline-entry')}[data-type="identity.liveness_result"]`);
    const offset = Number(await target.getAttribute('data-offset'));
    expect(offset).toBeGreaterThan(0);
    await target.locator('button').click();
    await officer.waitForFunction(
      ([sel, t]) => Math.abs((document.querySelector(sel as string) as HTMLVideoElement).currentTime - (t as number)) < 0.3,
      [tid('video-customer'), offset] as const,
    );
    await officer.waitForFunction(
      ([sel, t]) => Math.abs((document.querySelector(sel as string) as HTMLVideoElement).currentTime - (t as number)) < 0.5,
      [tid('video-teller'), offset] as const,
    );

    // The CLI agrees on the exported bundle.
    const ok = cli('verify-bundle', await downloadBundle('good.tar'));
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
  }, 180_000);

  it('serves the recording with ranges; a participant view is a stream copy of that participant\'s tracks; a changed recording byte in a bundle is found', async () => {
    const carol = await loginStaff(server.url, 'carol', 'carol-demo-pass');
    const auth = { authorization: `Bearer ${carol}` };
    const stored = (await server.app.ledger.entriesOf(sessionId)).find((e) => e.type === 'recording.stored')!.payload as {
      sha256: string;
      bytes: number;
      tracks: { participant: string; kind: string; codec: string }[];
    };
    const url = `${server.url}/api/compliance/sessions/${sessionId}/recording`;
    const part = await fetch(url, { headers: { ...auth, range: 'bytes=100-1099' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-1099/${stored.bytes}`);
    expect((await part.arrayBuffer()).byteLength).toBe(1000);
    const original = path.join(workDir, 'original.webm');
    const whole = await fetch(url, { headers: auth });
    expect(whole.headers.get('content-type')).toBe('video/webm');
    writeFileSync(original, new Uint8Array(await whole.arrayBuffer()));
    expect(createHash('sha256').update(readFileSync(original)).digest('hex')).toBe(stored.sha256);

    for (const participant of ['customer', 'teller'] as const) {
      const res = await fetch(`${url}?participant=${participant}`, { headers: auth });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-videoteller-derived')).toMatch(/not evidence/);
      const view = path.join(workDir, `${participant}.webm`);
      writeFileSync(view, new Uint8Array(await res.arrayBuffer()));
      const wanted = stored.tracks.map((t, i) => ({ ...t, i })).filter((t) => t.participant === participant);
      expect(wanted.length).toBeGreaterThan(0);
      const streams = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,codec_type', '-of', 'json', view], { encoding: 'utf8' })).streams as { codec_name: string; codec_type: string }[];
      expect(streams.map((x) => [x.codec_type, x.codec_name])).toEqual(wanted.map((t) => [t.kind, t.codec]));
      // Stream copy: every packet of the view is the original's, same bytes, same spacing in time
      // (framemd5 restarts its clock at each output's start, so times are compared relative to
      // the first packet), and each stream starts where it starts in the original.
      const packets = (file: string, stream: number) => {
        const rows = execFileSync('ffmpeg', ['-v', 'error', '-i', file, '-map', `0:${stream}`, '-c', 'copy', '-f', 'framemd5', '-'], { encoding: 'utf8', maxBuffer: 64 << 20 })
          .split('\n')
          .filter((l) => l && !l.startsWith('#'))
          .map((l) => l.split(',').map((x) => x.trim()));
        const t0 = Number(rows[0]?.[2] ?? 0);
        return rows.map((r) => `${Number(r[2]) - t0},${r[4]},${r[5]}`);
      };
      const startOf = (file: string, stream: number) =>
        Number(execFileSync('ffprobe', ['-v', 'error', '-select_streams', String(stream), '-show_entries', 'stream=start_time', '-of', 'csv=p=0', file], { encoding: 'utf8' }).trim());
      for (const [k, t] of wanted.entries()) {
        const copied = packets(view, k);
        expect(copied.length).toBeGreaterThan(10);
        expect(copied).toEqual(packets(original, t.i));
        expect(Math.abs(startOf(view, k) - startOf(original, t.i))).toBeLessThan(0.05);
      }
    }

    // The bundle carries the recording; any changed byte of it is found.
    const file = await downloadBundle('with-recording.tar');
    const { readTar } = await import('../../src/ledger/tar.ts');
    const tar = new Uint8Array(readFileSync(file));
    const blob = readTar(tar).find((f) => f.name.startsWith(`blobs/${stored.sha256}`))!;
    expect(blob.data.length).toBe(stored.bytes);
    tar[blob.offset + Math.floor(stored.bytes / 2)]! ^= 0x01;
    const changed = path.join(workDir, 'changed-recording.tar');
    writeFileSync(changed, tar);
    const r = cli('verify-bundle', changed);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`FAIL recording\\s+${stored.sha256}`));
    expect(r.stdout).toMatch(/blob_mismatch/);
    expect(r.stdout).not.toMatch(/FAIL #/);
  }, 120_000);

  it('after one byte of an entry is changed on disk, the page and verify-bundle show that entry failed', async () => {
    const entries = await server.app.ledger.entriesOf(sessionId);
    const decision = entries.find((e) => e.type === 'decision.made')!;
    // Find the entry's frame in its segment and change one byte of its payload ("approved" →
    // "approvee"), fixing the frame's CRC so the server's own framing check cannot see it.
    const ledger = server.app.ledger.ledger as FileLedger;
    let changed = false;
    for (const seg of ledger.segmentFiles()) {
      const buf = readFileSync(seg);
      for (const f of scanFrames(buf, HEADER_BYTES, 1 << 20).frames) {
        const text = Buffer.from(f.payload).toString('utf8');
        if (!text.includes(`"index":${decision.index},`)) continue;
        const at = text.indexOf('"decision":"approved"');
        expect(at).toBeGreaterThan(0);
        const pos = f.offset + FRAME_OVERHEAD + Buffer.byteLength(text.slice(0, at)) + '"decision":"approve'.length;
        buf[pos] = 'e'.charCodeAt(0);
        const payload = buf.subarray(f.offset + FRAME_OVERHEAD, f.offset + FRAME_OVERHEAD + f.payload.length);
        buf.writeUInt32BE(crc32(payload, crc32(buf.subarray(f.offset, f.offset + 4))), f.offset + 4);
        writeFileSync(seg, buf);
        changed = true;
      }
    }
    expect(changed).toBe(true);

    await officer.reload();
    await officer.waitForSelector(`${tid('verify-result')}:not([data-state="running"])`, { timeout: 60_000 });
    expect(await officer.getAttribute(tid('verify-result'), 'data-state')).toBe('failed');
    const marks = await officer.$$eval(tid('timeline-entry'), (lis) => lis.map((li) => [Number((li as HTMLElement).dataset.index), (li as HTMLElement).dataset.verified]));
    expect(marks.filter(([, v]) => v === 'failed').map(([i]) => i)).toEqual([decision.index]);
    const problems = await officer.$$eval(`${tid('verify-problems')} li`, (lis) => lis.map((li) => li.textContent ?? ''));
    expect(problems[0]).toMatch(new RegExp(`^inclusion #${decision.index}: `));
    // What the changed entry now says is shown as not to be relied on.
    expect(await officer.textContent(tid('decision-value'))).toMatch(/^approvee .*NOT in the signed log/);
    await officer.screenshot({ path: path.join(shots, 'compliance-2-tampered.png'), fullPage: true });

    const r = cli('verify-bundle', await downloadBundle('tampered.tar'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`FAIL #${decision.index} `));
    expect(r.stdout.match(/FAIL #/g)).toHaveLength(1);
    expect(r.stdout).toMatch(new RegExp(`result\\s+FAILED: .*first: inclusion at entry ${decision.index}`));

    // A recording damaged in the blob store is not served as evidence, and the page says so.
    const rec = (await server.app.ledger.entriesOf(sessionId)).find((e) => e.type === 'recording.stored')!.payload as { sha256: string };
    const blobFile = server.app.identity.blobs.pathFor(rec.sha256);
    const bytes = readFileSync(blobFile);
    bytes[bytes.length >> 1]! ^= 0x01;
    writeFileSync(blobFile, bytes);
    const carol = await loginStaff(server.url, 'carol', 'carol-demo-pass');
    const res = await fetch(`${server.url}/api/compliance/sessions/${sessionId}/recording`, { headers: { authorization: `Bearer ${carol}` } });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: { code: 'conflict', reason: 'blob_corrupt' } });
    await officer.reload();
    await officer.waitForSelector(`${tid('verify-result')}:not([data-state="running"])`, { timeout: 60_000 });
    expect(await officer.getAttribute(tid('verify-blob-recording'), 'data-state')).toBe('failed');
  }, 120_000);
});
