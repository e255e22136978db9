import type { SessionState } from './protocol.ts';

/**
 * The session state machine. Every change of a session's state goes through `assertTransition`,
 * and the caller records it as evidence; nothing else writes `state`.
 */
const ALLOWED: Record<SessionState, readonly SessionState[]> = {
  created: ['queued', 'abandoned', 'expired', 'failed'],
  queued: ['offered', 'abandoned', 'expired', 'failed'],
  offered: ['in_call', 'queued', 'abandoned', 'expired', 'failed'],
  in_call: ['reconnecting', 'decided', 'ended', 'failed'],
  reconnecting: ['in_call', 'ended', 'failed'],
  decided: ['ended'],
  ended: [],
  abandoned: [],
  expired: [],
  failed: [],
};

export const TERMINAL_STATES: readonly SessionState[] = ['ended', 'abandoned', 'expired', 'failed'];

export class InvalidTransitionError extends Error {
  constructor(readonly from: SessionState, readonly to: SessionState) {
    super(`session cannot go from ${from} to ${to}`);
    this.name = 'InvalidTransitionError';
  }
}

export function canTransition(from: SessionState, to: SessionState): boolean {
  return ALLOWED[from].includes(to);
}

export function assertTransition(from: SessionState, to: SessionState): void {
  if (!canTransition(from, to)) throw new InvalidTransitionError(from, to);
}

export function isTerminal(state: SessionState): boolean {
  return TERMINAL_STATES.includes(state);
}
