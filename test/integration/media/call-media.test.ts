/**
 * CallMedia against real mediasoup workers (no mocks): transports, producers with browser-shaped
 * parameters, consumers, the ownership rules between participants and calls, and clean-up.
 */
import '../../../media/worker-bin.ts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CallMedia, type ProducerEvent, type Participant } from '../../../media/call-media.ts';
import { MediaError } from '../../../media/errors.ts';
import type { MediaWorkerPool } from '../../../media/worker-pool.ts';
import type { ErrorCode } from '../../../signaling/protocol.ts';
import {
  captureLogger,
  clientDtlsParameters,
  h264OnlyCapabilities,
  h264Parameters,
  opusParameters,
  startPool,
  sumOf,
  vp8Parameters,
} from './fixtures.ts';

let pool: MediaWorkerPool;
let capture: ReturnType<typeof captureLogger>;
const calls: CallMedia[] = [];
let seq = 0;

beforeAll(async () => {
  capture = captureLogger('debug');
  pool = await startPool({ numWorkers: 2, logger: capture.logger.child({ part: 'media' }) });
});
afterEach(() => {
  for (const c of calls.splice(0)) c.close();
});
afterAll(async () => {
  await pool?.close();
});

/**
 * A call as signaling creates it: its logger already binds sessionId and callId
 * (`bound: false` gives a logger without them, which CallMedia must complete).
 */
async function newCall({ bound = true } = {}): Promise<CallMedia> {
  seq++;
  const ids = { callId: `call-${seq}`, sessionId: `session-${seq}` };
  const base = capture.logger.child({ part: 'signaling' });
  const call = await CallMedia.create(pool, { ...ids, logger: bound ? base.child(ids) : base });
  calls.push(call);
  return call;
}

async function refusal(p: Promise<unknown>): Promise<{ code: ErrorCode; message: string }> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(MediaError);
    const e = err as MediaError;
    return { code: e.code, message: e.message };
  }
  throw new Error('expected a MediaError, the call succeeded');
}

/** Both sides with send and receive transports, connected. */
async function setUp(call: CallMedia) {
  const t = {} as Record<`${Participant}${'Send' | 'Recv'}`, string>;
  for (const p of ['customer', 'teller'] as const) {
    for (const d of ['send', 'recv'] as const) {
      const opts = await call.createTransport(p, d);
      await call.connectTransport(p, opts.id, clientDtlsParameters());
      t[`${p}${d === 'send' ? 'Send' : 'Recv'}`] = opts.id;
    }
  }
  return t;
}

describe('CallMedia transports', () => {
  it('creates a WebRTC transport with ICE candidates on 127.0.0.1 (UDP preferred, TCP too) through the worker WebRtcServer', async () => {
    const call = await newCall();
    const opts = await call.createTransport('customer', 'send');
    expect(opts.id).toMatch(/^[0-9a-f-]{36}$/);
    const candidates = opts.iceCandidates as Array<{ address: string; protocol: string; port: number; priority: number; type: string }>;
    expect(candidates.map((c) => c.protocol).sort()).toEqual(['tcp', 'udp']);
    for (const c of candidates) {
      expect(c.address).toBe('127.0.0.1');
      expect(c.type).toBe('host');
    }
    // preferUdp: the UDP candidate has the higher priority.
    const udp = candidates.find((c) => c.protocol === 'udp')!;
    const tcp = candidates.find((c) => c.protocol === 'tcp')!;
    expect(udp.priority).toBeGreaterThan(tcp.priority);
    // The ports are the worker's WebRtcServer ports, inside the configured range.
    expect(call.worker.ports.udp).toContain(udp.port);
    expect(call.worker.ports.tcp).toContain(tcp.port);
    expect(udp.port).toBeGreaterThanOrEqual(40000);
    expect(udp.port).toBeLessThanOrEqual(49999);
    expect(opts.iceParameters).toMatchObject({ usernameFragment: expect.any(String), password: expect.any(String), iceLite: true });
    expect((opts.dtlsParameters as { fingerprints: unknown[] }).fingerprints.length).toBeGreaterThan(0);
    expect(pool.stats().find((w) => w.pid === call.workerPid)?.transports).toBe(1);
  });

  it('connects a transport once: a second connect is invalid_state, bad DTLS parameters are bad_request', async () => {
    const call = await newCall();
    const a = await call.createTransport('customer', 'send');
    expect(await refusal(call.connectTransport('customer', a.id, { fingerprints: [{ algorithm: 'md5', value: 'AB:CD' }] }))).toMatchObject({ code: 'bad_request' });
    expect(await refusal(call.connectTransport('customer', a.id, { role: 'client' }))).toMatchObject({ code: 'bad_request' });
    expect(await refusal(call.connectTransport('customer', a.id, 'nonsense'))).toMatchObject({ code: 'bad_request' });
    await call.connectTransport('customer', a.id, clientDtlsParameters());
    expect(await refusal(call.connectTransport('customer', a.id, clientDtlsParameters()))).toMatchObject({ code: 'invalid_state' });
  });

  it("refuses a transport id of the other participant or of another call as not_found", async () => {
    const call = await newCall();
    const other = await newCall();
    const tellers = await call.createTransport('teller', 'send');
    const foreign = await other.createTransport('customer', 'send');
    expect(await refusal(call.connectTransport('customer', tellers.id, clientDtlsParameters()))).toMatchObject({ code: 'not_found' });
    expect(await refusal(call.connectTransport('customer', foreign.id, clientDtlsParameters()))).toMatchObject({ code: 'not_found' });
    expect(await refusal(call.produce('customer', tellers.id, 'audio', opusParameters()))).toMatchObject({ code: 'not_found' });
    expect(await refusal(call.restartIce('customer', foreign.id))).toMatchObject({ code: 'not_found' });
    expect(await refusal(call.createTransport('banker' as Participant, 'send'))).toMatchObject({ code: 'bad_request' });
    expect(await refusal(call.createTransport('customer', 'both' as 'send'))).toMatchObject({ code: 'bad_request' });
  });

  it('restarts ICE with new credentials', async () => {
    const call = await newCall();
    const t = await call.createTransport('teller', 'recv');
    const before = t.iceParameters as { usernameFragment: string; password: string };
    const after = await call.restartIce('teller', t.id);
    expect(after.usernameFragment).not.toBe(before.usernameFragment);
    expect(after.password).not.toBe(before.password);
  });

  it('replaces the first send transport with a second: the old one, its producers and the consumers of them close', async () => {
    const call = await newCall();
    const t = await setUp(call);
    const { producerId } = await call.produce('customer', t.customerSend, 'video', vp8Parameters());
    const consumer = await call.consume('teller', t.tellerRecv, producerId, call.rtpCapabilities);
    const closedEvents: ProducerEvent[] = [];
    call.on('producerclosed', (e) => closedEvents.push(e));
    const transportsBefore = sumOf(pool.stats(), 'transports');

    const second = await call.createTransport('customer', 'send');
    expect(second.id).not.toBe(t.customerSend);
    expect(closedEvents).toEqual([{ participant: 'customer', producerId, kind: 'video' }]);
    expect(call.producers('customer')).toEqual([]);
    expect(sumOf(pool.stats(), 'transports')).toBe(transportsBefore); // one closed, one created
    expect(call.router.closed).toBe(false);
    // The old transport is gone for its owner; its producer and the teller's consumer are gone too.
    expect(await refusal(call.produce('customer', t.customerSend, 'audio', opusParameters()))).toMatchObject({ code: 'not_found' });
    expect(await refusal(call.resumeConsumer('teller', consumer.id))).toMatchObject({ code: 'not_found' });
    expect(await refusal(call.consume('teller', t.tellerRecv, producerId, call.rtpCapabilities))).toMatchObject({ code: 'not_found' });
    // The new one works, and the video slot is free again.
    await call.connectTransport('customer', second.id, clientDtlsParameters());
    await expect(call.produce('customer', second.id, 'video', vp8Parameters())).resolves.toMatchObject({ producerId: expect.any(String) });
  });

  it('resetParticipant closes all of one side and leaves the other side alone', async () => {
    const call = await newCall();
    const t = await setUp(call);
    await call.produce('customer', t.customerSend, 'audio', opusParameters());
    await call.produce('teller', t.tellerSend, 'audio', opusParameters());
    await call.resetParticipant('customer');
    expect(call.producers('customer')).toEqual([]);
    expect(call.producers('teller')).toHaveLength(1);
    expect(pool.stats().find((w) => w.pid === call.workerPid)?.transports).toBe(2);
  });
});

describe('CallMedia producers and consumers', () => {
  it('produces opus and VP8 as a browser sends them, announces them, and the other participant consumes both', async () => {
    const call = await newCall();
    const t = await setUp(call);
    const announced: ProducerEvent[] = [];
    call.on('producer', (e) => announced.push(e));

    const audio = await call.produce('customer', t.customerSend, 'audio', opusParameters('0'));
    const video = await call.produce('customer', t.customerSend, 'video', vp8Parameters('1'));
    expect(announced).toEqual([
      { participant: 'customer', producerId: audio.producerId, kind: 'audio' },
      { participant: 'customer', producerId: video.producerId, kind: 'video' },
    ]);
    expect(call.producers('customer')).toEqual([
      { producerId: audio.producerId, kind: 'audio' },
      { producerId: video.producerId, kind: 'video' },
    ]);
    expect(call.producers('teller')).toEqual([]);
    expect(call.getProducer('customer', 'video')?.id).toBe(video.producerId);

    const caps = call.rtpCapabilities;
    const a = await call.consume('teller', t.tellerRecv, audio.producerId, caps);
    const v = await call.consume('teller', t.tellerRecv, video.producerId, caps);
    expect(a).toMatchObject({ producerId: audio.producerId, kind: 'audio' });
    expect(v).toMatchObject({ producerId: video.producerId, kind: 'video' });
    const vParams = v.rtpParameters as { codecs: Array<{ mimeType: string }>; encodings: Array<{ ssrc: number }> };
    expect(vParams.codecs[0]?.mimeType).toBe('video/VP8');
    expect(vParams.codecs.map((c) => c.mimeType)).toContain('video/rtx');
    expect(vParams.encodings[0]?.ssrc).toEqual(expect.any(Number));

    // Consumers start paused and are resumed by their owner only.
    expect(await refusal(call.resumeConsumer('customer', v.id))).toMatchObject({ code: 'not_found' });
    await call.resumeConsumer('teller', v.id);
    await call.resumeConsumer('teller', a.id);
    await call.resumeConsumer('teller', a.id); // idempotent
    // The same producer twice on one transport is a conflict.
    expect(await refusal(call.consume('teller', t.tellerRecv, audio.producerId, caps))).toMatchObject({ code: 'conflict' });
  });

  it('accepts H.264 constrained baseline (42e01f) from a phone without VP8', async () => {
    const call = await newCall();
    const t = await setUp(call);
    const { producerId } = await call.produce('customer', t.customerSend, 'video', h264Parameters());
    const c = await call.consume('teller', t.tellerRecv, producerId, call.rtpCapabilities);
    expect((c.rtpParameters as { codecs: Array<{ mimeType: string; parameters: Record<string, unknown> }> }).codecs[0]).toMatchObject({
      mimeType: 'video/H264',
      parameters: expect.objectContaining({ 'profile-level-id': '42e01f', 'packetization-mode': 1 }),
    });
  });

  it('allows one producer per kind per participant, only on their send transport', async () => {
    const call = await newCall();
    const t = await setUp(call);
    await call.produce('teller', t.tellerSend, 'video', vp8Parameters('1'));
    expect(await refusal(call.produce('teller', t.tellerSend, 'video', vp8Parameters('2')))).toMatchObject({ code: 'conflict' });
    expect(await refusal(call.produce('teller', t.tellerRecv, 'audio', opusParameters()))).toMatchObject({ code: 'bad_request' });
    expect(await refusal(call.consume('teller', t.tellerSend, 'x', call.rtpCapabilities))).toMatchObject({ code: 'bad_request' });
  });

  it("refuses to consume one's own producer (forbidden) and another call's or an unknown producer (not_found)", async () => {
    const call = await newCall();
    const other = await newCall();
    const t = await setUp(call);
    const o = await setUp(other);
    const own = await call.produce('teller', t.tellerSend, 'audio', opusParameters());
    const foreign = await other.produce('customer', o.customerSend, 'audio', opusParameters());
    expect(await refusal(call.consume('teller', t.tellerRecv, own.producerId, call.rtpCapabilities))).toMatchObject({ code: 'forbidden' });
    expect(await refusal(call.consume('teller', t.tellerRecv, foreign.producerId, call.rtpCapabilities))).toMatchObject({ code: 'not_found' });
    // Even when the other call lives on the same worker, or the consumer is the right role.
    expect(await refusal(call.consume('customer', t.customerRecv, foreign.producerId, call.rtpCapabilities))).toMatchObject({ code: 'not_found' });
    expect(await refusal(call.consume('customer', t.customerRecv, '00000000-0000-0000-0000-000000000000', call.rtpCapabilities))).toMatchObject({ code: 'not_found' });
    // The legitimate consumer still works.
    await expect(call.consume('customer', t.customerRecv, own.producerId, call.rtpCapabilities)).resolves.toMatchObject({ kind: 'audio' });
  });

  it('checks canConsume: a device without VP8 cannot take a VP8 producer (bad_request), but can take H.264', async () => {
    const call = await newCall();
    const t = await setUp(call);
    const vp8 = await call.produce('customer', t.customerSend, 'video', vp8Parameters());
    const caps = h264OnlyCapabilities(call.rtpCapabilities as unknown as Parameters<typeof h264OnlyCapabilities>[0]);
    const r = await refusal(call.consume('teller', t.tellerRecv, vp8.producerId, caps));
    expect(r.code).toBe('bad_request');
    expect(r.message).toMatch(/cannot receive this video/);
    expect(await refusal(call.consume('teller', t.tellerRecv, vp8.producerId, { codecs: [{ mimeType: 42 }] }))).toMatchObject({ code: 'bad_request' });
    expect(await refusal(call.consume('teller', t.tellerRecv, vp8.producerId, null))).toMatchObject({ code: 'bad_request' });
  });

  it("turns mediasoup's TypeErrors on bad rtpParameters into MediaError('bad_request') and keeps working", async () => {
    const call = await newCall();
    const t = await setUp(call);
    const bad: Array<[string, 'audio' | 'video', unknown]> = [
      ['no payloadType', 'audio', { ...opusParameters(), codecs: [{ mimeType: 'audio/opus', clockRate: 48000, channels: 2 }] }],
      ['codec the router lacks', 'video', { ...vp8Parameters(), codecs: [{ mimeType: 'video/VP9', payloadType: 98, clockRate: 90000 }] }],
      ['video codec on an audio producer', 'audio', vp8Parameters()],
      ['no codecs', 'audio', { ...opusParameters(), codecs: [] }],
      ['encodings not an array', 'audio', { ...opusParameters(), encodings: 'x' }],
      ['RTX pointing nowhere', 'video', { ...vp8Parameters(), codecs: [{ mimeType: 'video/rtx', payloadType: 97, clockRate: 90000, parameters: { apt: 1 } }] }],
      ['a string', 'video', 'rtp'],
      ['null', 'video', null],
    ];
    for (const [what, kind, params] of bad) {
      const r = await refusal(call.produce('customer', t.customerSend, kind, params));
      expect(r.code, what).toBe('bad_request');
    }
    expect(await refusal(call.produce('customer', t.customerSend, 'screen' as 'audio', opusParameters()))).toMatchObject({ code: 'bad_request' });
    // A duplicated SSRC is refused by the worker itself (a plain Error): still bad_request.
    const first = vp8Parameters('5');
    await call.produce('customer', t.customerSend, 'video', first);
    const clash = { ...opusParameters('6'), encodings: (first as { encodings: unknown[] }).encodings.map((e) => ({ ssrc: (e as { ssrc: number }).ssrc })) };
    expect(await refusal(call.produce('customer', t.customerSend, 'audio', clash))).toMatchObject({ code: 'bad_request' });
    // Nothing broke: a good producer still goes through.
    await expect(call.produce('customer', t.customerSend, 'audio', opusParameters('7'))).resolves.toMatchObject({ producerId: expect.any(String) });
  });
});

describe('CallMedia lifecycle', () => {
  it('close() closes the router and everything on it, emits closed once, and leaves every worker at zero', async () => {
    const a = await newCall();
    const b = await newCall();
    for (const call of [a, b]) {
      const t = await setUp(call);
      const au = await call.produce('customer', t.customerSend, 'audio', opusParameters());
      const vi = await call.produce('teller', t.tellerSend, 'video', vp8Parameters());
      await call.consume('teller', t.tellerRecv, au.producerId, call.rtpCapabilities);
      await call.consume('customer', t.customerRecv, vi.producerId, call.rtpCapabilities);
    }
    expect(sumOf(pool.stats(), 'routers')).toBe(2);
    expect(sumOf(pool.stats(), 'transports')).toBe(8);
    const closed: unknown[] = [];
    a.on('closed', (e) => closed.push(e));
    a.close();
    a.close();
    expect(closed).toEqual([{ reason: 'closed' }]);
    expect(a.closed).toBe(true);
    expect(a.router.closed).toBe(true);
    expect(sumOf(pool.stats(), 'routers')).toBe(1);
    b.close();
    // Synchronously after close(): the counts come from mediasoup's observer events.
    for (const w of pool.stats()) expect(w).toMatchObject({ routers: 0, transports: 0 });
    expect(await refusal(a.createTransport('customer', 'send'))).toMatchObject({ code: 'invalid_state' });
    expect(() => a.rtpCapabilities).toThrow(MediaError);
  });

  it('puts sessionId and callId on every log line of a call, once, whatever logger it was given', async () => {
    for (const bound of [true, false]) {
      const call = await newCall({ bound });
      const t = await setUp(call);
      await call.produce('customer', t.customerSend, 'audio', opusParameters());
      await refusal(call.produce('customer', t.customerSend, 'video', 'bad'));
      call.close();
      const mine = capture.raw.filter((l) => l.includes(call.callId) || l.includes(call.sessionId));
      expect(mine.length, `bound=${bound}`).toBeGreaterThanOrEqual(8);
      for (const l of mine) {
        expect(JSON.parse(l), l).toMatchObject({ callId: call.callId, sessionId: call.sessionId });
        expect(l.split('"callId"').length, l).toBe(2);
        expect(l.split('"sessionId"').length, l).toBe(2);
      }
      const msgs = mine.map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(msgs).toEqual(expect.arrayContaining(['call media created', 'transport created', 'transport connected', 'producer created', 'call media closed']));
    }
  });
});
