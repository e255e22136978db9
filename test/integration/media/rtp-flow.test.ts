/**
 * Real RTP through the built worker, without a browser: Node sends opus-shaped RTP into a
 * PlainTransport on one call's router, mediasoup pipes it over SRTP-protected PipeTransports to
 * another call's router on the other worker, and a PlainTransport consumer there sends it back to
 * Node. This proves the worker forwards media and that SRTP protect/unprotect works through the
 * libsrtp 2.5 compatibility shim of our worker build (the browser e2e test proves DTLS-SRTP).
 * It also exercises the hook later parts use: transports of their own on `CallMedia.router`,
 * closed with the call.
 */
import '../../../media/worker-bin.ts';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { types as ms } from 'mediasoup';
import { CallMedia } from '../../../media/call-media.ts';
import type { MediaWorkerPool } from '../../../media/worker-pool.ts';
import { captureLogger, startPool, sumOf } from './fixtures.ts';

let pool: MediaWorkerPool;
beforeAll(async () => {
  pool = await startPool({ numWorkers: 2, logger: captureLogger('silent').logger });
});
afterAll(async () => {
  await pool?.close();
});

function rtpPacket(seq: number, ssrc: number, payloadType: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(12);
  header[0] = 0x80; // V=2
  header[1] = payloadType & 0x7f;
  header.writeUInt16BE(seq & 0xffff, 2);
  header.writeUInt32BE((seq * 960) >>> 0, 4);
  header.writeUInt32BE(ssrc >>> 0, 8);
  return Buffer.concat([header, payload]);
}

describe('RTP through the worker', () => {
  it('forwards RTP from a PlainTransport producer over an SRTP pipe to a consumer on another worker', async () => {
    const a = await CallMedia.create(pool, { callId: 'rtp-a', sessionId: 'rtp-s-a', logger: captureLogger('silent').logger });
    const b = await CallMedia.create(pool, { callId: 'rtp-b', sessionId: 'rtp-s-b', logger: captureLogger('silent').logger });
    expect(a.workerPid).not.toBe(b.workerPid);
    const pipes: ms.Transport[] = [];
    for (const r of [a.router, b.router]) r.observer.on('newtransport', (t) => t.type === 'pipe' && pipes.push(t));

    const listenInfo = { protocol: 'udp' as const, ip: pool.network.listenIp, portRange: pool.network.portRange };
    const plainIn = await a.router.createPlainTransport({ listenInfo, rtcpMux: true, comedia: true });
    const ssrc = 0x1234abcd;
    const producer = await plainIn.produce({
      kind: 'audio',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }],
        encodings: [{ ssrc }],
      },
    });
    const { pipeProducer } = await a.router.pipeToRouter({ producerId: producer.id, router: b.router, listenInfo, enableSrtp: true });
    expect(pipeProducer?.id).toBe(producer.id);
    expect(pipes).toHaveLength(2);
    for (const p of pipes) expect((p as ms.PipeTransport).srtpParameters?.cryptoSuite).toEqual(expect.any(String));

    const sink = dgram.createSocket('udp4');
    sink.bind(0, '127.0.0.1');
    await once(sink, 'listening');
    const received: Buffer[] = [];
    sink.on('message', (msg) => {
      if ((msg[1]! & 0x7f) < 64 || (msg[1]! & 0x7f) > 95) received.push(msg); // RTP, not RTCP (PT 200-204 → 72-76)
    });
    const plainOut = await b.router.createPlainTransport({ listenInfo, rtcpMux: true, comedia: false });
    await plainOut.connect({ ip: '127.0.0.1', port: sink.address().port });
    const consumer = await plainOut.consume({ producerId: producer.id, rtpCapabilities: b.router.rtpCapabilities });
    expect(consumer.kind).toBe('audio');

    const source = dgram.createSocket('udp4');
    const payload = Buffer.from('videoteller-opus-frame-'.repeat(4));
    try {
      for (let seq = 1; seq <= 60 && received.length < 20; seq++) {
        source.send(rtpPacket(seq, ssrc, 100, payload), plainIn.tuple.localPort, '127.0.0.1');
        await new Promise((r) => setTimeout(r, 20));
      }
      await expect.poll(() => received.length, { timeout: 3000 }).toBeGreaterThanOrEqual(10);
      const first = received[0]!;
      // Forwarded with the consumer's SSRC and payload type, payload intact (after SRTP both ways).
      expect(first.readUInt32BE(8)).toBe(consumer.rtpParameters.encodings?.[0]?.ssrc);
      expect(first[1]! & 0x7f).toBe(consumer.rtpParameters.codecs[0]?.payloadType);
      expect(first.subarray(first.length - payload.length).equals(payload)).toBe(true);
      const stats = await producer.getStats();
      expect(stats[0]?.packetCount).toBeGreaterThanOrEqual(10);
    } finally {
      source.close();
      sink.close();
    }

    // Transports a later part puts on the call's router go away with the call.
    expect(sumOf(pool.stats(), 'transports')).toBe(4); // plain in, pipe ×2, plain out
    a.close();
    b.close();
    for (const w of pool.stats()) expect(w).toMatchObject({ routers: 0, transports: 0 });
  });
});
