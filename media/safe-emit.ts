import type { EventEmitter } from 'node:events';
import type { Logger } from '../src/logger.ts';

/**
 * Emits an event without letting a listener's exception break the operation that emitted it
 * (a media event handler that throws must not leave a transport or a tap half set up).
 */
export function safeEmit(emitter: EventEmitter, log: Logger, owner: string, event: string, args: unknown[]): void {
  try {
    emitter.emit(event, ...args);
  } catch (err) {
    log.error({ err, event }, `a ${owner} event listener threw`);
  }
}
