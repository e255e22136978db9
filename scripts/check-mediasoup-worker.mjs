#!/usr/bin/env node
// Checks a mediasoup worker binary through mediasoup's own Node API, without a browser:
//   MEDIASOUP_WORKER_BIN=/abs/path/mediasoup-worker node scripts/check-mediasoup-worker.mjs [mediasoup-package-dir]
// mediasoup-package-dir defaults to the repo's node_modules/mediasoup (its postinstall may have been
// skipped: only its JS is used). scripts/build-mediasoup-worker.sh runs this after every build.
//
// What it does: a Worker; a Router with VP8 + opus; a WebRtcTransport on 127.0.0.1 (udp + tcp; ICE
// candidates and DTLS fingerprints present); then, for each SRTP crypto suite, an SRTP round trip
// between two PlainTransports on loopback: RTP sent into a DirectTransport producer → consumer on
// plain transport A (srtp_protect) → UDP → plain transport B (srtp_unprotect) → producer → consumer on
// a DirectTransport, where the payload must arrive intact. That exercises the worker's libsrtp
// through scripts/mediasoup-shims/libsrtp2/srtp3_compat.h (libsrtp 2.5 under a 3.0 API) — the part
// of our build that differs most from upstream. DTLS (OpenSSL, not bridged) is left to the browser
// e2e test. Exit code 0 = all good; prints one line per step on stdout.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const TIMEOUT_MS = 30_000;
const repoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const workerBin = process.env.MEDIASOUP_WORKER_BIN;
if (!workerBin) {
  console.error('check-mediasoup-worker: set MEDIASOUP_WORKER_BIN to the worker binary to check');
  process.exit(2);
}

// mediasoup reads MEDIASOUP_WORKER_BIN when its module is evaluated: import it only now.
// (mediasoup's "exports" hides package.json: resolve its entry point and walk up to the package.)
function installedMediasoupDir() {
  let dir = path.dirname(createRequire(path.join(repoDir, 'package.json')).resolve('mediasoup'));
  while (path.basename(dir) !== 'mediasoup' && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}
const pkgDir = process.argv[2] ? path.resolve(process.argv[2]) : installedMediasoupDir();
const require = createRequire(path.join(pkgDir, 'package.json'));
const pkg = require('./package.json');
const mediasoup = (await import(pathToFileURL(path.join(pkgDir, pkg.main ?? 'node/lib/index.js')).href)).default;

const step = (msg) => console.log(`check-mediasoup-worker: ${msg}`);
const timer = setTimeout(() => {
  console.error(`check-mediasoup-worker: FAILED: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
timer.unref();

const mediaCodecs = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
];

function rtpPacket({ payloadType, seq, timestamp, ssrc, payload }) {
  const header = Buffer.alloc(12);
  header[0] = 0x80; // V=2, no padding, no extension, no CSRC
  header[1] = payloadType & 0x7f;
  header.writeUInt16BE(seq & 0xffff, 2);
  header.writeUInt32BE(timestamp >>> 0, 4);
  header.writeUInt32BE(ssrc >>> 0, 8);
  return Buffer.concat([header, payload]);
}

async function srtpRoundTrip(router, cryptoSuite) {
  const closers = [];
  try {
    const listenInfo = { protocol: 'udp', ip: '127.0.0.1' };
    const plainOpts = { listenInfo, rtcpMux: true, comedia: false, enableSrtp: true, srtpCryptoSuite: cryptoSuite };
    const a = await router.createPlainTransport(plainOpts);
    closers.push(() => a.close());
    const b = await router.createPlainTransport(plainOpts);
    closers.push(() => b.close());
    await a.connect({ ip: '127.0.0.1', port: b.tuple.localPort, srtpParameters: b.srtpParameters });
    await b.connect({ ip: '127.0.0.1', port: a.tuple.localPort, srtpParameters: a.srtpParameters });

    const directIn = await router.createDirectTransport();
    closers.push(() => directIn.close());
    const ssrc = 0x1234abcd;
    const source = await directIn.produce({
      kind: 'audio',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }],
        encodings: [{ ssrc }],
      },
    });

    // A sends what it consumes to B's address, encrypted with B's key; B decrypts it.
    const sent = await a.consume({ producerId: source.id, rtpCapabilities: router.rtpCapabilities });
    const relayed = await b.produce({ kind: 'audio', rtpParameters: sent.rtpParameters });
    const directOut = await router.createDirectTransport();
    closers.push(() => directOut.close());
    const sink = await directOut.consume({ producerId: relayed.id, rtpCapabilities: router.rtpCapabilities });

    const payloads = [];
    for (let i = 0; i < 20; i++) payloads.push(Buffer.from(`videoteller srtp ${cryptoSuite} #${i} `.repeat(3)));
    const received = new Set();
    const done = new Promise((resolve) => {
      sink.on('rtp', (packet) => {
        // The sink's RTP header differs (payload type, SSRC, sequence numbers), the payload must not.
        const text = packet.subarray(12 + (packet[0] & 0x0f) * 4).toString();
        const i = payloads.findIndex((p) => text.endsWith(p.toString()));
        if (i >= 0) received.add(i);
        if (received.size >= payloads.length / 2) resolve();
      });
    });
    for (let i = 0; i < payloads.length; i++) {
      source.send(rtpPacket({ payloadType: 100, seq: 1000 + i, timestamp: 960 * i, ssrc, payload: payloads[i] }));
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
    if (received.size < payloads.length / 2) {
      const [statsA] = await a.getStats();
      const [statsB] = await b.getStats();
      throw new Error(
        `${cryptoSuite}: ${received.size}/${payloads.length} packets came through ` +
          `(A sent ${statsA.bytesSent} bytes, B received ${statsB.bytesReceived} bytes)`,
      );
    }
    step(`SRTP ${cryptoSuite}: ${received.size}/${payloads.length} RTP packets encrypted, sent over UDP, decrypted intact`);
  } finally {
    for (const close of closers.reverse()) close();
  }
}

let worker;
try {
  if (mediasoup.version !== pkg.version) throw new Error(`mediasoup reports ${mediasoup.version}, package.json ${pkg.version}`);
  worker = await mediasoup.createWorker({ logLevel: 'warn' });
  const died = new Promise((_, reject) => worker.on('died', (err) => reject(new Error(`worker died: ${err}`))));
  const run = async () => {
    step(`Worker pid ${worker.pid} (mediasoup ${mediasoup.version}, ${workerBin})`);
    const router = await worker.createRouter({ mediaCodecs });
    const codecs = router.rtpCapabilities.codecs.map((c) => c.mimeType);
    if (!codecs.includes('audio/opus') || !codecs.includes('video/VP8')) throw new Error(`router codecs: ${codecs}`);
    step(`Router with ${codecs.filter((m) => !m.endsWith('/rtx')).join(', ')}`);

    const webRtc = await router.createWebRtcTransport({
      listenInfos: [
        { protocol: 'udp', ip: '127.0.0.1' },
        { protocol: 'tcp', ip: '127.0.0.1' },
      ],
    });
    const candidates = webRtc.iceCandidates.map((c) => `${c.protocol}:${c.address}:${c.port}`);
    if (candidates.length !== 2 || !webRtc.dtlsParameters.fingerprints.length) {
      throw new Error(`WebRtcTransport: candidates ${candidates}, fingerprints ${webRtc.dtlsParameters.fingerprints.length}`);
    }
    const [stats] = await webRtc.getStats();
    step(`WebRtcTransport ${candidates.join(' ')}, ICE ${webRtc.iceState}, DTLS ${webRtc.dtlsState} (${stats.type})`);
    webRtc.close();

    for (const suite of ['AEAD_AES_256_GCM', 'AEAD_AES_128_GCM', 'AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32']) {
      await srtpRoundTrip(router, suite);
    }
    router.close();
  };
  await Promise.race([run(), died]);
  worker.close();
  step('OK');
} catch (err) {
  console.error(`check-mediasoup-worker: FAILED: ${err?.stack ?? err}`);
  worker?.close();
  process.exitCode = 1;
}
