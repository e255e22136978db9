import type { Logger } from '../src/logger.ts';
import type { CallCoordinator, Participant } from './calls.ts';
import { handle, type AppSocket } from './handlers.ts';

/**
 * The media messages of a call, the same for both sides. `currentSession` says which session the
 * socket is in a call for; CallMedia itself refuses transports, producers and consumers that are
 * not this participant's, so one call can never reach into another.
 */
export function registerMediaHandlers(
  socket: AppSocket,
  participant: Participant,
  currentSession: () => Promise<string | undefined>,
  calls: CallCoordinator,
  log: Logger,
): void {
  const call = async () => calls.require(await currentSession());

  handle(socket, 'media:capabilities', log, async () => ({ rtpCapabilities: (await call()).media.rtpCapabilities }));

  handle(socket, 'media:createTransport', log, async ({ direction }) => {
    const c = await call();
    const options = await c.media.createTransport(participant, direction);
    // Producers the other side already has: announce them once this side can receive.
    if (direction === 'recv') setImmediate(() => calls.announceExistingProducers(c, participant));
    return options;
  });

  handle(socket, 'media:connectTransport', log, async ({ transportId, dtlsParameters }) => {
    await (await call()).media.connectTransport(participant, transportId, dtlsParameters);
    return {};
  });

  handle(socket, 'media:produce', log, async ({ transportId, kind, rtpParameters }) =>
    (await call()).media.produce(participant, transportId, kind, rtpParameters),
  );

  handle(socket, 'media:consume', log, async ({ transportId, producerId, rtpCapabilities }) =>
    (await call()).media.consume(participant, transportId, producerId, rtpCapabilities),
  );

  handle(socket, 'media:resumeConsumer', log, async ({ consumerId }) => {
    await (await call()).media.resumeConsumer(participant, consumerId);
    return {};
  });

  handle(socket, 'media:restartIce', log, async ({ transportId }) => ({
    iceParameters: await (await call()).media.restartIce(participant, transportId),
  }));
}
