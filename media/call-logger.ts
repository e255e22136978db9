import type { Logger } from '../src/logger.ts';

/** A child logger carrying sessionId and callId, unless the given logger already binds them. */
export function childWithCall(logger: Logger, sessionId: string, callId: string): Logger {
  const bound = logger.bindings();
  const extra: Record<string, string> = {};
  if (bound['sessionId'] !== sessionId) extra['sessionId'] = sessionId;
  if (bound['callId'] !== callId) extra['callId'] = callId;
  return logger.child(extra);
}
