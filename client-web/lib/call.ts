/**
 * The media side of a call with mediasoup-client, over the protocol's media messages:
 *
 *   media:capabilities → Device.load → media:createTransport (send, recv)
 *   send transport 'connect' → media:connectTransport, 'produce' → media:produce (audio + video)
 *   media:newProducer (the peer's, including those that existed before this side joined)
 *     → media:consume → recvTransport.consume → media:resumeConsumer → <video>/<audio>
 *
 * The server announces the peer's producers with media:newProducer, possibly before this side has
 * its receive transport: those wait in a queue, and each producer is consumed once.
 */
import { Device, detectDeviceAsync } from 'mediasoup-client';
import type { Consumer, DtlsParameters, IceCandidate, IceParameters, Producer, RtpCapabilities, RtpParameters, Transport } from 'mediasoup-client/types';
import type { MediaKind } from '../../signaling/protocol.ts';
import { listen, request, type AppSocket } from './socket.ts';

export type CallMediaState = 'connecting' | 'connected' | 'reconnecting' | 'failed' | 'closed';

export interface CallMediaOptions {
  socket: AppSocket;
  /** Tracks to send; the caller owns them (close() does not stop them). */
  localStream: MediaStream;
  remoteVideo: HTMLVideoElement;
  /** Remote audio plays here, so the video element can stay muted (muted video may autoplay). */
  remoteAudio: HTMLAudioElement;
  onState?: (state: CallMediaState) => void;
  /** Remote audio could not start without a user gesture: offer a button that calls resumeAudio(). */
  onAudioBlocked?: () => void;
  onError?: (err: Error) => void;
}

export interface RtpStats {
  framesDecoded: number;
  framesReceived: number;
  framesEncoded: number;
  frameWidth: number;
  frameHeight: number;
  bytesReceived: number;
  bytesSent: number;
  packetsLost: number;
}

export interface CallStats {
  inbound: { video?: RtpStats; audio?: RtpStats };
  outbound: { video?: RtpStats; audio?: RtpStats };
  sendState?: string;
  recvState?: string;
}

/** Whether mediasoup-client supports this browser (checked before the customer joins the queue). */
export async function browserSupported(): Promise<boolean> {
  return (await detectDeviceAsync()) !== undefined && typeof RTCPeerConnection !== 'undefined';
}

export class CallMedia {
  private device?: Device;
  private sendTransport?: Transport;
  private recvTransport?: Transport;
  private readonly producers = new Map<string, Producer>();
  private readonly consumers = new Map<string, Consumer>();
  private readonly seen = new Set<string>();
  private readonly waiting: Array<{ producerId: string; kind: MediaKind }> = [];
  private readonly unlisten: () => void;
  private closed = false;
  private state: CallMediaState = 'connecting';

  constructor(private readonly opts: CallMediaOptions) {
    this.unlisten = listen(opts.socket, 'media:newProducer', (p) => {
      if (this.closed || this.seen.has(p.producerId)) return;
      this.seen.add(p.producerId);
      if (this.recvTransport) this.consumeSafely(p);
      else this.waiting.push(p);
    });
  }

  get connectionState(): CallMediaState {
    return this.state;
  }

  /** Sets up the device and both transports, sends the local tracks. */
  async start(): Promise<void> {
    const { socket } = this.opts;
    const { rtpCapabilities } = await request(socket, 'media:capabilities', {});
    const device = await Device.factory();
    await device.load({ routerRtpCapabilities: rtpCapabilities as RtpCapabilities });
    this.device = device;
    if (this.closed) return;

    this.sendTransport = await this.createTransport('send');
    this.recvTransport = await this.createTransport('recv');
    if (this.closed) return;
    for (const p of this.waiting.splice(0)) this.consumeSafely(p);

    for (const track of this.opts.localStream.getTracks()) {
      const kind = track.kind as MediaKind;
      if (!device.canProduce(kind)) {
        console.warn(`videoteller: this browser cannot send ${kind} to the server`);
        continue;
      }
      const producer = await this.sendTransport.produce({
        track,
        stopTracks: false,
        ...(kind === 'video' ? { encodings: [{ maxBitrate: 900_000 }], codecOptions: { videoGoogleStartBitrate: 600 } } : {}),
      });
      if (this.closed) return;
      this.producers.set(producer.id, producer);
    }
  }

  /** Ends the media of this call: producers, consumers and transports close; local tracks stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unlisten();
    for (const c of this.consumers.values()) c.close();
    for (const p of this.producers.values()) p.close();
    this.consumers.clear();
    this.producers.clear();
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.opts.remoteVideo.srcObject = null;
    this.opts.remoteAudio.srcObject = null;
    this.setState('closed');
  }

  /** Plays the remote audio after a user gesture (when autoplay refused it). */
  async resumeAudio(): Promise<void> {
    await this.opts.remoteAudio.play();
  }

  /** RTP statistics of both transports (mediasoup-client's transport.getStats()). */
  async stats(): Promise<CallStats> {
    const result: CallStats = { inbound: {}, outbound: {} };
    const [recv, send] = await Promise.all([this.recvTransport?.getStats(), this.sendTransport?.getStats()]);
    recv?.forEach((r: Record<string, unknown>) => {
      if (r.type === 'inbound-rtp' && (r.kind === 'video' || r.kind === 'audio')) result.inbound[r.kind] = rtpStats(r);
    });
    send?.forEach((r: Record<string, unknown>) => {
      if (r.type === 'outbound-rtp' && (r.kind === 'video' || r.kind === 'audio')) result.outbound[r.kind] = rtpStats(r);
    });
    if (this.sendTransport) result.sendState = this.sendTransport.connectionState;
    if (this.recvTransport) result.recvState = this.recvTransport.connectionState;
    return result;
  }

  private async createTransport(direction: 'send' | 'recv'): Promise<Transport> {
    const { socket } = this.opts;
    const device = this.device!;
    const options = await request(socket, 'media:createTransport', { direction });
    const transportOptions = {
      id: options.id,
      iceParameters: options.iceParameters as IceParameters,
      iceCandidates: options.iceCandidates as IceCandidate[],
      dtlsParameters: options.dtlsParameters as DtlsParameters,
    };
    const transport = direction === 'send' ? device.createSendTransport(transportOptions) : device.createRecvTransport(transportOptions);

    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      request(socket, 'media:connectTransport', { transportId: transport.id, dtlsParameters }).then(() => callback(), errback);
    });
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters }, callback, errback) => {
        request(socket, 'media:produce', { transportId: transport.id, kind, rtpParameters }).then(
          ({ producerId }) => callback({ id: producerId }),
          errback,
        );
      });
    }
    transport.on('connectionstatechange', (state) => {
      if (this.closed) return;
      if (state === 'connected') this.updateState();
      else if (state === 'disconnected') this.setState('reconnecting');
      else if (state === 'failed') void this.restartIce(transport);
    });
    return transport;
  }

  /** An ICE restart with fresh server parameters (network change on a phone, for instance). */
  private async restartIce(transport: Transport): Promise<void> {
    this.setState('reconnecting');
    try {
      const { iceParameters } = await request(this.opts.socket, 'media:restartIce', { transportId: transport.id });
      if (!this.closed && !transport.closed) await transport.restartIce({ iceParameters: iceParameters as IceParameters });
    } catch (err) {
      this.setState('failed');
      this.opts.onError?.(err as Error);
    }
  }

  private consumeSafely(p: { producerId: string; kind: MediaKind }): void {
    this.consume(p).catch((err: Error) => {
      if (!this.closed) this.opts.onError?.(err);
    });
  }

  private async consume({ producerId }: { producerId: string; kind: MediaKind }): Promise<void> {
    const { socket, remoteVideo, remoteAudio } = this.opts;
    const transport = this.recvTransport!;
    const options = await request(socket, 'media:consume', {
      transportId: transport.id,
      producerId,
      rtpCapabilities: this.device!.rtpCapabilities as Record<string, unknown>,
    });
    if (this.closed) return;
    const consumer = await transport.consume({
      id: options.id,
      producerId: options.producerId,
      kind: options.kind,
      rtpParameters: options.rtpParameters as RtpParameters,
    });
    if (this.closed) {
      consumer.close();
      return;
    }
    this.consumers.set(consumer.id, consumer);
    const element = consumer.kind === 'video' ? remoteVideo : remoteAudio;
    element.srcObject = new MediaStream([consumer.track]);
    consumer.observer.on('close', () => {
      this.consumers.delete(consumer.id);
      if (element.srcObject instanceof MediaStream && element.srcObject.getTracks().includes(consumer.track)) element.srcObject = null;
    });
    consumer.on('transportclose', () => consumer.close());
    consumer.on('trackended', () => consumer.close());
    await request(socket, 'media:resumeConsumer', { consumerId: consumer.id });
    element.play().catch((err: Error) => {
      // The video element is muted and may always autoplay; audio may need a tap first.
      if (err.name === 'NotAllowedError' && consumer.kind === 'audio') this.opts.onAudioBlocked?.();
    });
  }

  private updateState(): void {
    const states = [this.sendTransport?.connectionState, this.recvTransport?.connectionState];
    if (states.some((s) => s === 'connected')) this.setState('connected');
  }

  private setState(state: CallMediaState): void {
    if (this.state === state || (this.state === 'closed' && state !== 'closed')) return;
    this.state = state;
    this.opts.onState?.(state);
  }
}

function rtpStats(r: Record<string, unknown>): RtpStats {
  const n = (k: string) => (typeof r[k] === 'number' ? (r[k] as number) : 0);
  return {
    framesDecoded: n('framesDecoded'),
    framesReceived: n('framesReceived'),
    framesEncoded: n('framesEncoded'),
    frameWidth: n('frameWidth'),
    frameHeight: n('frameHeight'),
    bytesReceived: n('bytesReceived'),
    bytesSent: n('bytesSent'),
    packetsLost: n('packetsLost'),
  };
}
