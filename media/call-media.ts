import { EventEmitter } from 'node:events';
import { safeEmit } from './safe-emit.ts';
import type { types as ms } from 'mediasoup';
import type { Logger } from '../src/logger.ts';
import { childWithCall } from './call-logger.ts';
import type { ConsumerOptions, MediaKind, TransportOptions } from '../signaling/protocol.ts';
import { MediaError, toMediaError } from './errors.ts';
import type { CallRouterAppData, MediaWorker, MediaWorkerPool } from './worker-pool.ts';

export type Participant = 'customer' | 'teller';
export type TransportDirection = 'send' | 'recv';

const PARTICIPANTS: readonly Participant[] = ['customer', 'teller'];
const KINDS: readonly MediaKind[] = ['audio', 'video'];

/**
 * The router's codecs. Opus for audio; VP8 first for video, and H.264 constrained baseline
 * (packetization-mode 1, profile-level-id 42e01f) for phones whose browsers only have hardware
 * H.264. A stream is forwarded in the codec it was sent in, so a receiver must support it too;
 * every current browser decodes both.
 */
export const MEDIA_CODECS: ms.RtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: { 'x-google-start-bitrate': 1000 } },
  {
    kind: 'video',
    mimeType: 'video/H264',
    clockRate: 90000,
    parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1, 'x-google-start-bitrate': 1000 },
  },
];

export const MEDIA_LIMITS = {
  /** Send-side estimate the server starts each receive path at before congestion control learns (bps). */
  initialAvailableOutgoingBitrate: 1_000_000,
  /** Cap on what one participant may send us (audio + video, bps): enough for sharp 720p of an ID document. */
  maxIncomingBitrate: 2_500_000,
} as const;

export interface ProducerInfo {
  producerId: string;
  kind: MediaKind;
}

export interface ProducerEvent extends ProducerInfo {
  participant: Participant;
}

/**
 * A participant's transport changed state in a way signaling cares about.
 * - `connected`: ICE connected and DTLS connected (also after a recovery);
 * - `disconnected`: ICE lost the peer (consent expired, network change): start the reconnect
 *   grace period; the client may recover by `restartIce` or by creating new transports;
 * - `failed`: DTLS failed; the transport will not carry media again, new transports are needed;
 * - `closed`: the peer closed DTLS (page closed its RTCPeerConnection) or ICE closed.
 * Transports the server itself closes (replacement, reset, close of the call) report nothing.
 */
export interface TransportStateEvent {
  participant: Participant;
  direction: TransportDirection;
  transportId: string;
  state: 'connected' | 'disconnected' | 'failed' | 'closed';
  ice: ms.IceState;
  dtls: ms.DtlsState;
}

export interface CallMediaClosedEvent {
  /** `closed`: close() was called; `worker_died`: the worker process died; `worker_closed`: the pool shut down. */
  reason: 'closed' | 'worker_died' | 'worker_closed';
}

export type CallMediaEvents = {
  /** A participant started sending audio or video: tell the other side so it can consume it. */
  producer: [ProducerEvent];
  /** A producer ended (its transport was replaced or reset, or the participant's send transport closed). */
  producerclosed: [ProducerEvent];
  transportstate: [TransportStateEvent];
  /** Emitted once, whatever closed the call's media. */
  closed: [CallMediaClosedEvent];
};

export interface CallMediaOptions {
  callId: string;
  sessionId: string;
  logger: Logger;
}

type TransportAppData = { participant: Participant; direction: TransportDirection; callId: string };
type EndpointAppData = { participant: Participant; callId: string };

interface TransportEntry {
  participant: Participant;
  direction: TransportDirection;
  transport: ms.WebRtcTransport<TransportAppData>;
  connected: boolean;
  /** Set when we close it ourselves: no state events for it any more. */
  retired: boolean;
  reported: TransportStateEvent['state'] | 'connecting';
}

interface ProducerEntry {
  participant: Participant;
  producer: ms.Producer<EndpointAppData>;
}

interface ConsumerEntry {
  participant: Participant;
  transportId: string;
  consumer: ms.Consumer<EndpointAppData>;
}

/**
 * The media of one 1:1 call (customer ↔ teller): one mediasoup Router on the least-loaded worker,
 * for each participant at most one send and one receive WebRtcTransport (through the worker's
 * WebRtcServer), at most one audio and one video producer, and consumers of the other
 * participant's producers only.
 *
 * Every method checks that what it is given belongs to the calling participant of THIS call:
 * transport and consumer ids of someone else are `not_found` (their existence is not revealed),
 * a producer id not of this call is `not_found`, one's own producer is `forbidden`. Whatever
 * mediasoup rejects in what the client sent (rtpParameters, dtlsParameters, rtpCapabilities)
 * comes out as MediaError('bad_request'); nothing a client sends can throw anything else except
 * `internal` for a real fault. Mutating operations run one at a time per call, so concurrent
 * messages cannot race each other (two produces of one kind, two creates of one transport).
 *
 * A second `createTransport` for a participant and direction that already has one REPLACES it:
 * the old transport is closed, with its producers (the other side's consumers of them close too,
 * and 'producerclosed' is emitted) or its consumers. A page that lost its connection or reloaded
 * simply sets up again; refusing would strand it until the grace period ends.
 *
 * For later parts (frame tap, recorder): `router`, `worker` (its pool's `network` tells where to
 * listen) and `getProducer()` give what a PlainTransport consumer needs; the 'producer' event says
 * when the customer's video appears. They must create their transports on `router`, so closing
 * the call closes them too.
 */
export class CallMedia extends EventEmitter<CallMediaEvents> {
  readonly callId: string;
  readonly sessionId: string;
  private readonly log: Logger;
  private readonly transports = new Map<string, TransportEntry>();
  private readonly current: Record<Participant, Partial<Record<TransportDirection, string>>> = { customer: {}, teller: {} };
  private readonly producersById = new Map<string, ProducerEntry>();
  private readonly consumersById = new Map<string, ConsumerEntry>();
  private queue: Promise<unknown> = Promise.resolve();
  private closeReason: CallMediaClosedEvent['reason'] | undefined;

  private constructor(
    private readonly _router: ms.Router<CallRouterAppData>,
    private readonly _worker: MediaWorker,
    opts: CallMediaOptions,
  ) {
    super();
    this.callId = opts.callId;
    this.sessionId = opts.sessionId;
    this.log = childWithCall(opts.logger, opts.sessionId, opts.callId);
    _router.on('workerclose', () => this.markClosed(_worker.worker.died ? 'worker_died' : 'worker_closed'));
    _router.observer.once('close', () => this.markClosed('closed'));
  }

  /** Creates the call's router on the pool's least-loaded worker. */
  static async create(pool: MediaWorkerPool, opts: CallMediaOptions): Promise<CallMedia> {
    if (!opts.callId || !opts.sessionId) throw new MediaError('bad_request', 'callId and sessionId are required');
    const { router, worker } = await pool.createRouter({ callId: opts.callId, sessionId: opts.sessionId }, MEDIA_CODECS);
    const media = new CallMedia(router, worker, opts);
    if (router.closed) throw new MediaError('unavailable', 'the media worker went away; try again');
    media.log.info({ routerId: router.id, worker: worker.index, pid: worker.pid }, 'call media created');
    return media;
  }

  // ---------------------------------------------------------------------------------------------
  // Read-only state

  /** The router's RTP capabilities, for the client's mediasoup-client Device.load(). */
  get rtpCapabilities(): ms.RtpCapabilities {
    this.assertOpen();
    return this._router.rtpCapabilities;
  }

  /** The call's router: the hook for the frame tap and the recorder (their transports go on it). */
  get router(): ms.Router<CallRouterAppData> {
    return this._router;
  }

  /** The pool worker the router lives on. */
  get worker(): MediaWorker {
    return this._worker;
  }

  get workerPid(): number {
    return this._worker.pid;
  }

  get closed(): boolean {
    return this.closeReason !== undefined;
  }

  /** The participant's open producers (what the other side may consume). */
  producers(participant: Participant): ProducerInfo[] {
    assertParticipant(participant);
    return [...this.producersById.values()]
      .filter((p) => p.participant === participant && !p.producer.closed)
      .map((p) => ({ producerId: p.producer.id, kind: p.producer.kind }));
  }

  /** The participant's open producer of a kind, e.g. the customer's video for the frame tap. */
  getProducer(participant: Participant, kind: MediaKind): ms.Producer | undefined {
    for (const p of this.producersById.values()) {
      if (p.participant === participant && p.producer.kind === kind && !p.producer.closed) return p.producer;
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------------------------
  // Operations for signaling

  /** Creates (or replaces, see the class comment) the participant's send or receive transport. */
  async createTransport(participant: Participant, direction: TransportDirection): Promise<TransportOptions> {
    assertParticipant(participant);
    if (direction !== 'send' && direction !== 'recv') throw new MediaError('bad_request', 'direction must be "send" or "recv"');
    return this.serial(async () => {
      let transport: ms.WebRtcTransport<TransportAppData> | undefined;
      try {
        transport = await this._router.createWebRtcTransport<TransportAppData>({
          webRtcServer: this._worker.webRtcServer,
          enableUdp: true,
          enableTcp: true,
          preferUdp: true,
          initialAvailableOutgoingBitrate: MEDIA_LIMITS.initialAvailableOutgoingBitrate,
          appData: { participant, direction, callId: this.callId },
        });
        if (direction === 'send') await transport.setMaxIncomingBitrate(MEDIA_LIMITS.maxIncomingBitrate);
      } catch (err) {
        transport?.close();
        throw this.fail(err, 'creating the transport', { participant, direction });
      }
      if (this.closed) {
        transport.close();
        throw new MediaError('invalid_state', 'the call has ended');
      }

      const previous = this.current[participant][direction];
      if (previous) {
        this.log.info({ participant, direction, transportId: previous, newTransportId: transport.id }, 'replacing transport');
        this.retireTransport(previous);
      }
      const entry: TransportEntry = { participant, direction, transport, connected: false, retired: false, reported: 'connecting' };
      this.transports.set(transport.id, entry);
      this.current[participant][direction] = transport.id;
      transport.on('icestatechange', () => this.onTransportState(entry));
      transport.on('dtlsstatechange', () => this.onTransportState(entry));
      transport.observer.once('close', () => {
        this.transports.delete(transport.id);
        if (this.current[participant][direction] === transport.id) delete this.current[participant][direction];
      });
      this.log.info({ participant, direction, transportId: transport.id }, 'transport created');
      return {
        id: transport.id,
        iceParameters: transport.iceParameters,
        iceCandidates: transport.iceCandidates,
        dtlsParameters: transport.dtlsParameters,
      };
    });
  }

  /** Gives the transport the client's DTLS parameters (once per transport). */
  async connectTransport(participant: Participant, transportId: string, dtlsParameters: unknown): Promise<void> {
    assertParticipant(participant);
    return this.serial(async () => {
      const entry = this.ownTransport(participant, transportId);
      if (entry.connected) throw new MediaError('invalid_state', 'this transport is already connected');
      if (!isObject(dtlsParameters) || !Array.isArray(dtlsParameters['fingerprints'])) {
        throw new MediaError('bad_request', 'dtlsParameters must be an object with fingerprints');
      }
      try {
        await entry.transport.connect({ dtlsParameters: dtlsParameters as unknown as ms.DtlsParameters });
      } catch (err) {
        throw this.fail(err, 'invalid dtlsParameters', { participant, transportId }, true);
      }
      entry.connected = true;
      this.log.info({ participant, transportId, direction: entry.direction }, 'transport connected');
    });
  }

  /**
   * Starts receiving the participant's audio or video on their send transport. At most one
   * producer per kind per participant (a second is `conflict`; replacing the send transport
   * frees the slot). Emits 'producer'.
   */
  async produce(participant: Participant, transportId: string, kind: MediaKind, rtpParameters: unknown): Promise<{ producerId: string }> {
    assertParticipant(participant);
    if (!KINDS.includes(kind)) throw new MediaError('bad_request', 'kind must be "audio" or "video"');
    return this.serial(async () => {
      const entry = this.ownTransport(participant, transportId);
      if (entry.direction !== 'send') throw new MediaError('bad_request', 'produce needs your send transport, not your receive transport');
      if (this.getProducer(participant, kind)) throw new MediaError('conflict', `you are already sending ${kind}`);
      checkRtpParameters(kind, rtpParameters);
      let producer: ms.Producer<EndpointAppData>;
      try {
        producer = await entry.transport.produce<EndpointAppData>({
          kind,
          rtpParameters: rtpParameters as ms.RtpParameters,
          appData: { participant, callId: this.callId },
        });
      } catch (err) {
        throw this.fail(err, 'invalid rtpParameters', { participant, transportId, kind }, true);
      }
      if (this.closed || entry.retired) {
        producer.close();
        throw new MediaError('invalid_state', 'the transport was closed meanwhile');
      }
      const info: ProducerEvent = { participant, producerId: producer.id, kind };
      this.producersById.set(producer.id, { participant, producer });
      producer.observer.once('close', () => {
        this.producersById.delete(producer.id);
        // mediasoup closes the consumers of a closed producer only when the worker's notification
        // arrives; close ours now, so a resume racing with it is a clean not_found. Not while the
        // whole router closes: the worker has dropped them already, and a closeConsumer request
        // for each would only come back as "handler not found" errors.
        if (!this.closed && !this._router.closed) {
          for (const c of [...this.consumersById.values()]) if (c.consumer.producerId === producer.id) c.consumer.close();
        }
        if (!this.closed && !this._router.closed) {
          this.log.info(info, 'producer closed');
          this.safeEmit('producerclosed', info);
        }
      });
      const codec = producer.rtpParameters.codecs[0]?.mimeType;
      this.log.info({ ...info, codec, type: producer.type }, 'producer created');
      this.safeEmit('producer', info);
      return { producerId: producer.id };
    });
  }

  /**
   * Sends the OTHER participant's producer to this participant over their receive transport. The
   * consumer starts paused: the client resumes it with resumeConsumer() once its side is ready.
   */
  async consume(participant: Participant, transportId: string, producerId: string, rtpCapabilities: unknown): Promise<ConsumerOptions> {
    assertParticipant(participant);
    return this.serial(async () => {
      const entry = this.ownTransport(participant, transportId);
      if (entry.direction !== 'recv') throw new MediaError('bad_request', 'consume needs your receive transport, not your send transport');
      const source = typeof producerId === 'string' ? this.producersById.get(producerId) : undefined;
      if (!source || source.producer.closed) throw new MediaError('not_found', 'no such producer in this call');
      if (source.participant === participant) throw new MediaError('forbidden', 'you cannot consume your own producer');
      for (const c of this.consumersById.values()) {
        if (c.transportId === transportId && c.consumer.producerId === producerId && !c.consumer.closed) {
          throw new MediaError('conflict', 'this producer is already consumed on this transport');
        }
      }
      checkRtpCapabilities(rtpCapabilities);
      let canConsume: boolean;
      try {
        canConsume = this._router.canConsume({ producerId, rtpCapabilities: rtpCapabilities as ms.RtpCapabilities });
      } catch (err) {
        throw this.fail(err, 'invalid rtpCapabilities', { participant, producerId });
      }
      if (!canConsume) {
        throw new MediaError('bad_request', `your device cannot receive this ${source.producer.kind} (no codec in common with the sender)`);
      }
      let consumer: ms.Consumer<EndpointAppData>;
      try {
        consumer = await entry.transport.consume<EndpointAppData>({
          producerId,
          rtpCapabilities: rtpCapabilities as ms.RtpCapabilities,
          paused: true,
          appData: { participant, callId: this.callId },
        });
      } catch (err) {
        throw this.fail(err, 'invalid rtpCapabilities', { participant, producerId }, true);
      }
      if (this.closed || entry.retired) {
        consumer.close();
        throw new MediaError('invalid_state', 'the transport was closed meanwhile');
      }
      this.consumersById.set(consumer.id, { participant, transportId, consumer });
      consumer.observer.once('close', () => this.consumersById.delete(consumer.id));
      this.log.info({ participant, consumerId: consumer.id, producerId, kind: consumer.kind }, 'consumer created (paused)');
      return { id: consumer.id, producerId, kind: consumer.kind, rtpParameters: consumer.rtpParameters };
    });
  }

  /** Resumes one of the participant's consumers; for video also asks the sender for a key frame. */
  async resumeConsumer(participant: Participant, consumerId: string): Promise<void> {
    assertParticipant(participant);
    return this.serial(async () => {
      const entry = typeof consumerId === 'string' ? this.consumersById.get(consumerId) : undefined;
      if (!entry || entry.participant !== participant || entry.consumer.closed) throw new MediaError('not_found', 'no such consumer');
      try {
        await entry.consumer.resume();
      } catch (err) {
        if (entry.consumer.closed) throw new MediaError('not_found', 'no such consumer (its producer ended)', { cause: err });
        throw this.fail(err, 'resuming the consumer', { participant, consumerId });
      }
      if (entry.consumer.kind === 'video') {
        // The receiver cannot decode anything until the next key frame: ask for one now.
        await entry.consumer.requestKeyFrame().catch((err: unknown) => this.log.warn({ err, consumerId }, 'key frame request failed'));
        // A key frame lost on the way (or sent before the receiver was ready) leaves the picture
        // black until the sender's next one, which may be long: ask again a little later.
        const consumer = entry.consumer;
        for (const ms of [1000, 3000]) {
          setTimeout(() => {
            if (!consumer.closed) consumer.requestKeyFrame().catch(() => undefined);
          }, ms).unref();
        }
      }
      this.log.debug({ participant, consumerId, kind: entry.consumer.kind }, 'consumer resumed');
    });
  }

  /** New ICE credentials for one of the participant's transports (after a network change). */
  async restartIce(participant: Participant, transportId: string): Promise<ms.IceParameters> {
    assertParticipant(participant);
    return this.serial(async () => {
      const entry = this.ownTransport(participant, transportId);
      try {
        const iceParameters = await entry.transport.restartIce();
        this.log.info({ participant, transportId, direction: entry.direction }, 'ICE restarted');
        return iceParameters;
      } catch (err) {
        throw this.fail(err, 'restarting ICE', { participant, transportId });
      }
    });
  }

  /**
   * Closes all of a participant's transports (and so their producers and consumers, and the other
   * side's consumers of them), e.g. when their page reconnects and will set up from scratch.
   */
  async resetParticipant(participant: Participant): Promise<void> {
    assertParticipant(participant);
    return this.serial(async () => {
      const ids = Object.values(this.current[participant]);
      for (const id of ids) this.retireTransport(id);
      if (ids.length) this.log.info({ participant, transports: ids.length }, 'participant media reset');
    });
  }

  /** Closes the router and everything on it. Idempotent; emits 'closed' once. */
  close(): void {
    if (this.closed) return;
    this.markClosed('closed');
    if (!this._router.closed) this._router.close();
  }

  // ---------------------------------------------------------------------------------------------

  private markClosed(reason: CallMediaClosedEvent['reason']): void {
    if (this.closeReason) return;
    this.closeReason = reason;
    for (const entry of this.transports.values()) entry.retired = true;
    if (reason === 'worker_died') this.log.error({ reason }, 'call media lost: the media worker died');
    else this.log.info({ reason }, 'call media closed');
    this.safeEmit('closed', { reason });
  }

  private retireTransport(id: string): void {
    const entry = this.transports.get(id);
    if (!entry) return;
    entry.retired = true;
    if (this.current[entry.participant][entry.direction] === id) delete this.current[entry.participant][entry.direction];
    entry.transport.close();
  }

  private onTransportState(entry: TransportEntry): void {
    if (entry.retired || this.closed) return;
    const { iceState: ice, dtlsState: dtls, id: transportId } = entry.transport;
    const state: TransportEntry['reported'] =
      dtls === 'failed'
        ? 'failed'
        : dtls === 'closed' || ice === 'closed'
          ? 'closed'
          : ice === 'disconnected'
            ? 'disconnected'
            : (ice === 'connected' || ice === 'completed') && dtls === 'connected'
              ? 'connected'
              : 'connecting';
    if (state === entry.reported) return;
    entry.reported = state;
    if (state === 'connecting') return;
    const event: TransportStateEvent = { participant: entry.participant, direction: entry.direction, transportId, state, ice, dtls };
    if (state === 'connected') this.log.info(event, 'transport connected (ICE and DTLS)');
    else this.log.warn(event, `transport ${state}`);
    this.safeEmit('transportstate', event);
  }

  /** The participant's own open transport, or not_found (never revealing someone else's). */
  private ownTransport(participant: Participant, transportId: string): TransportEntry {
    this.assertOpen();
    const entry = typeof transportId === 'string' ? this.transports.get(transportId) : undefined;
    if (!entry || entry.participant !== participant || entry.retired || entry.transport.closed) {
      throw new MediaError('not_found', 'no such transport');
    }
    return entry;
  }

  private assertOpen(): void {
    if (this.closed) throw new MediaError('invalid_state', 'the call has ended');
  }

  /** Runs mutating operations one after another; a failed one does not block the next. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => {
      this.assertOpen();
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Logs and converts an error from mediasoup. */
  private fail(err: unknown, what: string, context: Record<string, unknown>, clientInput = false): MediaError {
    const mediaErr = this.closed ? new MediaError('invalid_state', 'the call has ended', { cause: err }) : toMediaError(err, what, { clientInput });
    if (mediaErr.code === 'internal') this.log.error({ ...context, err }, `${what}: mediasoup error`);
    else this.log.info({ ...context, code: mediaErr.code, reason: mediaErr.message }, `${what}: refused`);
    return mediaErr;
  }

  private safeEmit<E extends keyof CallMediaEvents>(event: E, ...args: CallMediaEvents[E]): void {
    safeEmit(this as unknown as EventEmitter, this.log, 'CallMedia', event, args);
  }
}

function assertParticipant(p: unknown): asserts p is Participant {
  if (!PARTICIPANTS.includes(p as Participant)) throw new MediaError('bad_request', 'participant must be "customer" or "teller"');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks what mediasoup does not: that every codec (including RTX) is of the declared kind, so an
 * "audio" producer cannot carry video. mediasoup validates everything else.
 */
function checkRtpParameters(kind: MediaKind, rtpParameters: unknown): void {
  if (!isObject(rtpParameters) || !Array.isArray(rtpParameters['codecs']) || rtpParameters['codecs'].length === 0) {
    throw new MediaError('bad_request', 'invalid rtpParameters: codecs must be a non-empty array');
  }
  for (const codec of rtpParameters['codecs'] as unknown[]) {
    const mimeType = isObject(codec) ? codec['mimeType'] : undefined;
    if (typeof mimeType !== 'string' || !mimeType.toLowerCase().startsWith(`${kind}/`)) {
      throw new MediaError('bad_request', `invalid rtpParameters: every codec of a ${kind} producer must be ${kind}/*`);
    }
  }
}

/**
 * The shape router.canConsume() needs. It swallows malformed capabilities (returns false) but logs
 * them at error as if they were our fault; a client's garbage is refused here instead.
 */
function checkRtpCapabilities(caps: unknown): void {
  const ok =
    isObject(caps) &&
    Array.isArray(caps['codecs']) &&
    caps['codecs'].every((c: unknown) => isObject(c) && typeof c['mimeType'] === 'string' && typeof c['clockRate'] === 'number') &&
    (caps['headerExtensions'] === undefined || (Array.isArray(caps['headerExtensions']) && caps['headerExtensions'].every(isObject)));
  if (!ok) throw new MediaError('bad_request', 'invalid rtpCapabilities: codecs must be an array of { mimeType, clockRate, ... }');
}
