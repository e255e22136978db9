import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { FaceEngine } from '../../src/identity/engine.ts';
import { OperationsMetrics } from '../../src/operations/metrics.ts';
import { composeFrame, faceSquare, fixtureFaces, loadSample } from '../fixtures/faces/samples.ts';
import { createSession, loginStaff, startTestServer, type TestServer } from '../helpers/server.ts';
import { next, outcome, request, SocketClients, type Client } from '../helpers/socket.ts';

/**
 * /metrics after a scripted set of calls: answered (within and after the service-level target),
 * abandoned (before and after the target), declined then accepted by another teller, one call whose
 * both sides produced media. Every counter and the service level must be exactly what the script
 * implies. The only timing in the script is "wait longer than the 1 s target" (1.5 s sleeps); the
 * quick steps take milliseconds, far inside it.
 */

const TOKEN = 'metrics-token-0123456789abcdef';
const SKILL = { business_type: 'corporate_account_opening', language: 'en' };
let server: TestServer;
const clients = new SocketClients(() => server.url);

beforeAll(async () => {
  server = await startTestServer({ SERVICE_LEVEL_TARGET_S: '1', OFFER_TIMEOUT_MS: '60000', METRICS_TOKEN: TOKEN });
});
afterAll(async () => {
  clients.closeAll();
  await server?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ok<T>(p: Promise<{ ok: boolean; data?: T; error?: unknown }>, what: string): Promise<T> {
  const ack = await p;
  if (!ack.ok) throw new Error(`${what} refused: ${JSON.stringify(ack)}`);
  return ack.data as T;
}

async function teller(username: string): Promise<Client> {
  const socket = clients.open('/teller', await loginStaff(server.url, username, `${username}-demo-pass`));
  expect(await outcome(socket)).toEqual({ connected: true });
  return socket;
}

const available = (t: Client) => ok(request(t, 'teller:availability', { status: 'available' }), 'available');
const away = (t: Client) => ok(request(t, 'teller:availability', { status: 'away' }), 'away');

async function customer(): Promise<{ socket: Client; sessionId: string }> {
  const { customerToken, sessionId } = await createSession(server);
  const socket = clients.open('/customer', customerToken);
  expect(await outcome(socket)).toEqual({ connected: true });
  return { socket, sessionId };
}

const join = (c: { socket: Client }) => ok(request(c.socket, 'queue:join', { consent: true }), 'queue:join');

/** The next offer to any of these tellers (listeners removed afterwards). */
function nextOffer(tellers: Client[]): Promise<{ teller: Client; offerId: string; sessionId: string }> {
  return new Promise((resolve) => {
    const handlers = tellers.map((t) => {
      const h = (o: { offerId: string; sessionId: string }) => {
        tellers.forEach((x, i) => x.off('offer:new', handlers[i]));
        resolve({ teller: t, ...o });
      };
      t.on('offer:new', h);
      return h;
    });
  });
}

async function accept(t: Client, offerId: string): Promise<void> {
  const started = next(t, 'call:start');
  await ok(request(t, 'offer:accept', { offerId }), 'offer:accept');
  await started;
}

/** Both sides of the call create a send transport and produce (signaling only, as a page would). */
async function produceBothSides(t: Client, c: Client): Promise<void> {
  for (const [socket, ssrc] of [
    [c, 11111111],
    [t, 22222222],
  ] as const) {
    const send = await ok(request<{ id: string }>(socket, 'media:createTransport', { direction: 'send' }), 'createTransport');
    const rtpParameters = {
      mid: '0',
      codecs: [{ mimeType: 'video/VP8', payloadType: 96, clockRate: 90000, rtcpFeedback: [] }],
      headerExtensions: [],
      encodings: [{ ssrc }],
      rtcp: { cname: `c${ssrc}` },
    };
    await ok(request(socket, 'media:produce', { transportId: send.id, kind: 'video', rtpParameters }), 'produce');
  }
}

async function scrape(): Promise<string> {
  const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of the one sample of `name` whose labels include `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const found: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) found.push(Number(m[3]));
  }
  if (found.length !== 1) throw new Error(`${name}${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0]!;
}

describe('/metrics after a scripted set of calls', () => {
  let text: string;

  beforeAll(async () => {
    const alice = await teller('alice');
    const dana = await teller('dana');
    const tellers = [alice, dana];

    // 1. Two calls answered at once (inside the target); the first one's media connects.
    await available(alice);
    for (const withMedia of [true, false]) {
      const c = await customer();
      const offered = nextOffer(tellers);
      await join(c);
      const offer = await offered;
      expect(offer.teller).toBe(alice);
      await accept(alice, offer.offerId);
      if (withMedia) await produceBothSides(alice, c.socket);
      await ok(request(alice, 'call:hangup', {}), 'hangup');
    }
    await away(alice);

    // 2. One call answered after the target: nobody is available until 1.5 s after it queued.
    {
      const c = await customer();
      await join(c);
      await sleep(1500);
      const offered = nextOffer(tellers);
      await available(alice);
      const offer = await offered;
      await accept(alice, offer.offerId);
      await ok(request(alice, 'call:hangup', {}), 'hangup');
      await away(alice);
    }

    // 3. Two customers leave the queue: one at once (inside the target), one after 1.5 s.
    for (const waitMs of [0, 1500]) {
      const c = await customer();
      await join(c);
      if (waitMs) await sleep(waitMs);
      expect(await ok(request(c.socket, 'queue:leave', {}), 'queue:leave')).toEqual({ state: 'abandoned' });
    }

    // 4. One call declined by one teller, accepted by the other; it stays in progress.
    for (const t of tellers) await available(t);
    {
      const c = await customer();
      let offered = nextOffer(tellers);
      await join(c);
      const declinedBy: Client[] = [];
      for (let i = 0; i < 1; i++) {
        const offer = await offered;
        offered = nextOffer(tellers);
        await ok(request(offer.teller, 'offer:decline', { offerId: offer.offerId }), 'offer:decline');
        declinedBy.push(offer.teller);
      }
      const offer = await offered;
      expect(declinedBy).not.toContain(offer.teller);
      await accept(offer.teller, offer.offerId);
      for (const t of declinedBy) await away(t);
    }

    // 5. One customer waits, with nobody available.
    await join(await customer());

    text = await scrape();
  }, 60_000);

  it('counts offers by outcome', () => {
    expect(sample(text, 'videoteller_offers_total', { outcome: 'accepted' })).toBe(4);
    expect(sample(text, 'videoteller_offers_total', { outcome: 'declined' })).toBe(1);
    expect(sample(text, 'videoteller_offers_total', { outcome: 'timeout' })).toBe(0);
    expect(sample(text, 'videoteller_offers_total', { outcome: 'canceled' })).toBe(0);
    expect(sample(text, 'videoteller_offers_total', { outcome: 'withdrawn' })).toBe(0);
  });

  it('counts answered and abandoned calls against the target, and the service level', () => {
    expect(sample(text, 'videoteller_calls_answered_total', SKILL)).toBe(4);
    expect(sample(text, 'videoteller_calls_answered_within_target_total', SKILL)).toBe(3);
    expect(sample(text, 'videoteller_calls_abandoned_total', SKILL)).toBe(2);
    expect(sample(text, 'videoteller_calls_abandoned_after_target_total', SKILL)).toBe(1);
    expect(sample(text, 'videoteller_service_level_target_seconds')).toBe(1);
    // answered within target / (answered + abandoned after target) = 3 / (4 + 1)
    expect(sample(text, 'videoteller_service_level_ratio')).toBe(0.6);
    expect(sample(text, 'videoteller_queue_wait_seconds_count', { ...SKILL, outcome: 'answered' })).toBe(4);
    expect(sample(text, 'videoteller_queue_wait_seconds_count', { ...SKILL, outcome: 'abandoned' })).toBe(2);
    // Average speed of answer is the answered waits' sum over their count; the late call alone waited ≥ 1.5 s.
    const asa = sample(text, 'videoteller_average_speed_of_answer_seconds');
    expect(asa).toBeCloseTo(sample(text, 'videoteller_queue_wait_seconds_sum', { ...SKILL, outcome: 'answered' }) / 4, 9);
    expect(asa * 4).toBeGreaterThanOrEqual(1.5);
  });

  it('counts the connection rate: one of four answered calls had both sides producing', () => {
    expect(sample(text, 'videoteller_calls_media_connected_total', SKILL)).toBe(1);
    expect(sample(text, 'videoteller_connection_rate_ratio')).toBe(0.25);
  });

  it('shows the queue, calls in progress per node and worker, and the parts', () => {
    expect(sample(text, 'videoteller_queue_length', SKILL)).toBe(1);
    expect(sample(text, 'videoteller_queue_oldest_wait_seconds', SKILL)).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'videoteller_calls_in_progress')).toBe(1);
    expect(sample(text, 'videoteller_media_worker_calls', { worker: '0' })).toBe(1);
    expect(sample(text, 'videoteller_media_workers_alive')).toBe(1);
    expect(sample(text, 'videoteller_media_worker_cpu_seconds_total', { worker: '0' })).toBeGreaterThan(0);
    // Every transition, offer and media producer above was an evidence append, each timed.
    expect(sample(text, 'videoteller_ledger_append_seconds_count', { result: 'ok' })).toBeGreaterThan(20);
    expect(sample(text, 'videoteller_ledger_append_seconds_count', { result: 'error' })).toBe(0);
    expect(sample(text, 'videoteller_ledger_checkpoint_age_seconds')).toBeGreaterThanOrEqual(0);
    // No reference photo in these sessions: the face engine analysed nothing.
    expect(sample(text, 'videoteller_face_match_latency_seconds_count')).toBe(0);
  });

  it('gives the supervisor board the same figures through callStats.snapshot()', async () => {
    const snap = await server.app.operations.callStats.snapshot();
    expect(snap).toMatchObject({
      serviceLevelTargetS: 1,
      answered: 4,
      answeredWithinTarget: 3,
      abandoned: 2,
      abandonedAfterTarget: 1,
      mediaConnected: 1,
      serviceLevel: 0.6,
      connectionRate: 0.25,
      offers: { accepted: 4, declined: 1, withdrawn: 0, timeout: 0, canceled: 0 },
      queues: [{ businessType: 'corporate_account_opening', language: 'en', waiting: 1 }],
    });
    expect(snap.bySkill).toEqual([expect.objectContaining({ businessType: 'corporate_account_opening', language: 'en', answered: 4, abandoned: 2 })]);
  });
});

describe('/metrics access', () => {
  it('requires the bearer token when METRICS_TOKEN is set, with a typed 401', async () => {
    for (const authorization of [undefined, 'Basic bWV0cmljczp4', `Bearer ${TOKEN}x`, 'Bearer', `bearer ${TOKEN}`]) {
      const res = await fetch(`${server.url}/metrics`, { headers: authorization === undefined ? {} : { authorization } });
      expect(res.status, String(authorization)).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: 'unauthorized' } });
    }
  });

  it('refuses bad SERVICE_LEVEL_TARGET_S and METRICS_TOKEN at start, naming the variable', () => {
    expect(() => loadConfig({ SERVICE_LEVEL_TARGET_S: '0' })).toThrow(ConfigError);
    expect(() => loadConfig({ SERVICE_LEVEL_TARGET_S: 'soon' })).toThrow(/SERVICE_LEVEL_TARGET_S/);
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN/);
    expect(() => loadConfig({ METRICS_TOKEN: 'has a space in it 0123456789' })).toThrow(/METRICS_TOKEN/);
    expect(loadConfig({}).SERVICE_LEVEL_TARGET_S).toBe(20);
  });
});

describe('face-match latency', () => {
  it('observes every live frame the real face engine analyses, with the latency the call sees', async () => {
    const metrics = new OperationsMetrics();
    const engine = await FaceEngine.start({ workers: 1, onFrameAnalyzed: (a, l) => metrics.observeFrame(a, l) });
    try {
      const f = fixtureFaces().faces.find((x) => x.id === 's1f0')!;
      const img = composeFrame(faceSquare(loadSample(f.sample), f.box), { seed: 1, noise: 3 });
      const outcomes = [];
      for (let ts = 0; ts < 2; ts++) outcomes.push(await engine.submitFrame('call-M', { rgb: img.data, width: img.width, height: img.height, ts }));
      const bad = await engine.submitFrame('call-M', { rgb: new Uint8Array(10), width: 640, height: 480, ts: 3 });
      expect(bad.status).toBe('failed');
      const text = (await metrics.render()).body;
      // Two analysed, the failed frame is not a latency.
      expect(sample(text, 'videoteller_face_match_latency_seconds_count')).toBe(2);
      expect(sample(text, 'videoteller_face_analysis_seconds_count')).toBe(2);
      const latencies = outcomes.map((o) => (o.status === 'analyzed' ? o.latencyMs / 1000 : Number.NaN));
      expect(sample(text, 'videoteller_face_match_latency_seconds_sum')).toBeCloseTo(latencies[0]! + latencies[1]!, 9);
      const computed = outcomes.map((o) => (o.status === 'analyzed' ? o.analysis.ms / 1000 : Number.NaN));
      expect(sample(text, 'videoteller_face_analysis_seconds_sum')).toBeCloseTo(computed[0]! + computed[1]!, 9);
    } finally {
      await engine.close();
    }
  }, 60_000);
});
