import type { Logger } from '../src/logger.ts';
import type { CallCoordinator, Participant } from './calls.ts';
import type { CallOps } from './call-operations.ts';
import { handle, SignalingError, type AppSocket } from './handlers.ts';
import type { ClientAckData, ClientMessage } from './protocol.ts';

/** The media messages of a call, the same for both sides. */
export const MEDIA_EVENTS = [
  'media:capabilities',
  'media:createTransport',
  'media:connectTransport',
  'media:produce',
  'media:consume',
  'media:resumeConsumer',
  'media:restartIce',
] as const;
export type MediaEvent = (typeof MEDIA_EVENTS)[number];

/**
 * Registers the media messages on a participant's socket. `currentSession` says which session the
 * socket is in a call for; the message runs on the node holding that call's media (CallOps.media),
 * which may be another node.
 */
export function registerMediaHandlers(
  socket: AppSocket,
  participant: Participant,
  currentSession: () => Promise<string | undefined>,
  ops: Pick<CallOps, 'media'>,
  log: Logger,
): void {
  for (const event of MEDIA_EVENTS) {
    handle(socket, event, log, async (payload) => {
      const sessionId = await currentSession();
      if (!sessionId) throw new SignalingError('invalid_state', 'no call in progress');
      return (await ops.media(sessionId, { participant, event, payload })) as ClientAckData[typeof event];
    });
  }
}

/**
 * Runs one media message on the node holding the call. CallMedia itself refuses transports,
 * producers and consumers that are not this participant's, so one call can never reach into another.
 */
export async function runMediaMessage<E extends MediaEvent>(
  calls: CallCoordinator,
  sessionId: string,
  participant: Participant,
  event: E,
  payload: ClientMessage<E>,
): Promise<ClientAckData[E]> {
  const call = calls.require(sessionId);
  const media = call.media;
  switch (event as MediaEvent) {
    case 'media:capabilities':
      return { rtpCapabilities: media.rtpCapabilities } as ClientAckData[E];
    case 'media:createTransport': {
      const { direction } = payload as ClientMessage<'media:createTransport'>;
      const options = await media.createTransport(participant, direction);
      // Producers the other side already has: announce them once this side can receive.
      if (direction === 'recv') setImmediate(() => calls.announceExistingProducers(call, participant));
      return options as ClientAckData[E];
    }
    case 'media:connectTransport': {
      const { transportId, dtlsParameters } = payload as ClientMessage<'media:connectTransport'>;
      await media.connectTransport(participant, transportId, dtlsParameters);
      return {} as ClientAckData[E];
    }
    case 'media:produce': {
      const { transportId, kind, rtpParameters } = payload as ClientMessage<'media:produce'>;
      return (await media.produce(participant, transportId, kind, rtpParameters)) as ClientAckData[E];
    }
    case 'media:consume': {
      const { transportId, producerId, rtpCapabilities } = payload as ClientMessage<'media:consume'>;
      return (await media.consume(participant, transportId, producerId, rtpCapabilities)) as ClientAckData[E];
    }
    case 'media:resumeConsumer':
      await media.resumeConsumer(participant, (payload as ClientMessage<'media:resumeConsumer'>).consumerId);
      return {} as ClientAckData[E];
    case 'media:restartIce':
      return { iceParameters: await media.restartIce(participant, (payload as ClientMessage<'media:restartIce'>).transportId) } as ClientAckData[E];
  }
  throw new SignalingError('bad_request', `unknown media message ${String(event)}`);
}
