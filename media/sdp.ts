import type { types as ms } from 'mediasoup';

/** Video codecs the frame tap can hand to ffmpeg (the router's video codecs, see MEDIA_CODECS). */
export const TAP_VIDEO_CODECS = ['video/VP8', 'video/H264'] as const;

export interface RecvSdpOptions {
  /** Loopback port ffmpeg receives RTP on; it receives RTCP on `rtpPort + 1` (ffmpeg's convention, not configurable in an SDP). */
  rtpPort: number;
  /** What mediasoup will send: the codec and payload type of a consumer's rtpParameters. */
  codec: Pick<ms.RtpCodecParameters, 'mimeType' | 'payloadType' | 'clockRate' | 'parameters'>;
  /** Session name (`s=`), for ffmpeg's logs only. */
  name?: string;
}

/**
 * The SDP that tells ffmpeg's `sdp` demuxer where RTP arrives and how to depacketize it: one
 * video m-line on 127.0.0.1, the consumer's payload type, and for H.264 the packetization mode
 * (mediasoup forwards single NAL units, STAP-A and FU-A: mode 1). No RTX, no header extensions:
 * the tap's consumer is created without them, so what arrives is exactly this.
 *
 * Throws a TypeError for a codec ffmpeg should not be given (only VP8 and H.264 are routed).
 */
export function buildRecvSdp({ rtpPort, codec, name = 'videoteller frame tap' }: RecvSdpOptions): string {
  if (!Number.isInteger(rtpPort) || rtpPort < 1 || rtpPort > 65534) throw new TypeError(`invalid RTP port ${rtpPort}`);
  const mime = codec.mimeType.toLowerCase();
  if (!TAP_VIDEO_CODECS.some((c) => c.toLowerCase() === mime)) throw new TypeError(`the frame tap cannot decode ${codec.mimeType}`);
  const encoding = codec.mimeType.split('/')[1]!; // VP8 | H264, as rtpmap spells them
  const pt = codec.payloadType;
  const lines = [
    'v=0',
    'o=- 0 0 IN IP4 127.0.0.1',
    `s=${name.replace(/[\r\n]/g, ' ')}`,
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=video ${rtpPort} RTP/AVP ${pt}`,
    `a=rtpmap:${pt} ${encoding}/${codec.clockRate}`,
  ];
  if (mime === 'video/h264') {
    const params = codec.parameters ?? {};
    const fmtp = [`packetization-mode=${Number(params['packetization-mode'] ?? 1)}`];
    if (typeof params['profile-level-id'] === 'string') fmtp.push(`profile-level-id=${params['profile-level-id']}`);
    lines.push(`a=fmtp:${pt} ${fmtp.join(';')}`);
  }
  lines.push('a=recvonly');
  return lines.join('\r\n') + '\r\n';
}
