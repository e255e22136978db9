/**
 * Shared fixtures of the media integration tests: a pool on real mediasoup workers with a log
 * capture, and parameters shaped like what Chrome sends through mediasoup-client 3 (one encoding,
 * RTX for video, transport-cc, the usual header extensions).
 */
import '../../../media/worker-bin.ts';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../../src/logger.ts';
import { MediaWorkerPool, type MediaWorkerPoolOptions } from '../../../media/worker-pool.ts';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger (the app's, with its redaction) writing parsed lines into an array. */
export function captureLogger(level = 'debug'): { logger: Logger; lines: LogLine[]; raw: string[] } {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) {
        raw.push(line);
        lines.push(JSON.parse(line) as LogLine);
      }
      cb();
    },
  });
  return { logger: createLogger(level, stream), lines, raw };
}

export async function startPool(overrides: Partial<MediaWorkerPoolOptions> & { logger: Logger }): Promise<MediaWorkerPool> {
  return MediaWorkerPool.start({
    numWorkers: 2,
    logLevel: 'warn',
    listenIp: '127.0.0.1',
    rtcMinPort: 40000,
    rtcMaxPort: 49999,
    cpuSampleIntervalMs: 0,
    ...overrides,
  });
}

let ssrc = 100_000_000;
let cnameSeq = 0;

const commonHeaderExtensions = [
  { uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4, encrypt: false, parameters: {} },
  { uri: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', id: 2, encrypt: false, parameters: {} },
  { uri: 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', id: 3, encrypt: false, parameters: {} },
];

/** Opus as Chrome sends it (mid is per transport: give each producer of a transport its own). */
export function opusParameters(mid = '0'): Record<string, unknown> {
  return {
    mid,
    codecs: [
      {
        mimeType: 'audio/opus',
        payloadType: 111,
        clockRate: 48000,
        channels: 2,
        parameters: { minptime: 10, useinbandfec: 1 },
        rtcpFeedback: [{ type: 'transport-cc', parameter: '' }],
      },
    ],
    headerExtensions: [...commonHeaderExtensions, { uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: 1, encrypt: false, parameters: {} }],
    encodings: [{ ssrc: ssrc++, dtx: false }],
    rtcp: { cname: `cname-${cnameSeq++}`, reducedSize: true },
  };
}

const videoFeedback = [
  { type: 'goog-remb', parameter: '' },
  { type: 'transport-cc', parameter: '' },
  { type: 'ccm', parameter: 'fir' },
  { type: 'nack', parameter: '' },
  { type: 'nack', parameter: 'pli' },
];

const videoHeaderExtensions = [
  ...commonHeaderExtensions,
  { uri: 'urn:3gpp:video-orientation', id: 13, encrypt: false, parameters: {} },
  { uri: 'urn:ietf:params:rtp-hdrext:toffset', id: 14, encrypt: false, parameters: {} },
];

/** VP8 with RTX, one encoding (no simulcast), as Chrome sends it. */
export function vp8Parameters(mid = '1'): Record<string, unknown> {
  const main = ssrc++;
  return {
    mid,
    codecs: [
      { mimeType: 'video/VP8', payloadType: 96, clockRate: 90000, parameters: {}, rtcpFeedback: videoFeedback },
      { mimeType: 'video/rtx', payloadType: 97, clockRate: 90000, parameters: { apt: 96 }, rtcpFeedback: [] },
    ],
    headerExtensions: videoHeaderExtensions,
    encodings: [{ ssrc: main, rtx: { ssrc: ssrc++ }, dtx: false }],
    rtcp: { cname: `cname-${cnameSeq++}`, reducedSize: true },
  };
}

/** H.264 constrained baseline, packetization-mode 1, as a phone without VP8 hardware sends it. */
export function h264Parameters(mid = '1'): Record<string, unknown> {
  const main = ssrc++;
  return {
    mid,
    codecs: [
      {
        mimeType: 'video/H264',
        payloadType: 102,
        clockRate: 90000,
        parameters: { 'level-asymmetry-allowed': 1, 'packetization-mode': 1, 'profile-level-id': '42e01f' },
        rtcpFeedback: videoFeedback,
      },
      { mimeType: 'video/rtx', payloadType: 103, clockRate: 90000, parameters: { apt: 102 }, rtcpFeedback: [] },
    ],
    headerExtensions: videoHeaderExtensions,
    encodings: [{ ssrc: main, rtx: { ssrc: ssrc++ }, dtx: false }],
    rtcp: { cname: `cname-${cnameSeq++}`, reducedSize: true },
  };
}

/** DTLS parameters as a browser's mediasoup-client sends them on transport 'connect'. */
export function clientDtlsParameters(): Record<string, unknown> {
  const bytes = Array.from({ length: 32 }, (_, i) => ((i * 37 + 11) & 0xff).toString(16).padStart(2, '0').toUpperCase());
  return { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: bytes.join(':') }] };
}

/** A device that can only receive H.264 (no VP8), to test that canConsume is checked. */
export function h264OnlyCapabilities(routerCaps: { codecs?: Array<Record<string, unknown>>; headerExtensions?: unknown[] }): Record<string, unknown> {
  const codecs = routerCaps.codecs ?? [];
  const h264 = codecs.find((c) => String(c['mimeType']).toLowerCase() === 'video/h264');
  const keep = codecs.filter((c) => {
    const mime = String(c['mimeType']).toLowerCase();
    if (mime === 'video/vp8') return false;
    if (mime === 'video/rtx') return (c['parameters'] as { apt?: unknown } | undefined)?.apt === h264?.['preferredPayloadType'];
    return true;
  });
  return { codecs: keep, headerExtensions: routerCaps.headerExtensions ?? [] };
}

export const sumOf = (stats: Array<{ routers: number; transports: number }>, key: 'routers' | 'transports') => stats.reduce((n, w) => n + w[key], 0);
