/**
 * Every operation on a call in progress, each run on the node holding the call's media
 * (signaling/call-dispatch.ts): the media messages of both sides, hang-up and other ends, a
 * participant coming back, the teller's liveness check, document capture and decision.
 */
import { z } from 'zod';
import { approvalScopeSchema, staffRoleSchema, staffSkillsSchema } from '../src/auth/staff-directory.ts';
import type { StaffIdentity } from '../src/auth/staff-tokens.ts';
import type { CallEnded, ClientMessage, DecisionResult } from './protocol.ts';
import { clientMessages, callEndedSchema } from './protocol.ts';
import type { CallCoordinator, Participant } from './calls.ts';
import type { RecordingSummary } from './call-recording.ts';
import type { CallDispatch } from './call-dispatch.ts';
import { decideCall, type DecisionDeps } from './decisions.ts';
import { MEDIA_EVENTS, runMediaMessage, type MediaEvent } from './media-handlers.ts';

const participantSchema = z.enum(['customer', 'teller']);
const mediaArgsSchema = z
  .object({ participant: participantSchema, event: z.enum(MEDIA_EVENTS), payload: z.unknown() })
  .transform((a, ctx) => {
    // Parsed again with the socket's own schema: it may come from another node.
    const payload = clientMessages[a.event].safeParse(a.payload);
    if (!payload.success) {
      ctx.addIssue({ code: 'custom', message: `${a.event}: ${payload.error.issues[0]?.message ?? 'invalid'}` });
      return z.NEVER;
    }
    return { ...a, payload: payload.data };
  });
const staffSchema = z.object({
  id: z.string().min(1),
  displayName: z.string(),
  role: staffRoleSchema,
  skills: staffSkillsSchema,
  approvalScope: approvalScopeSchema.optional(),
});

export interface CallOps {
  media(sessionId: string, args: { participant: Participant; event: MediaEvent; payload: unknown }): Promise<unknown>;
  /** Ends the call, whoever asks; resolves with its stored recording (null: none). Idempotent. */
  end(sessionId: string, args: { actor: string; reason: CallEnded['reason'] }): Promise<RecordingSummary | null>;
  /** A participant hangs up: refused when there is no call to hang up. */
  hangUp(sessionId: string, args: { actor: string; reason: CallEnded['reason'] }): Promise<void>;
  /** A participant is back: false when there is no call waiting for them. */
  rejoin(sessionId: string, args: { participant: Participant; actor: string }): Promise<boolean>;
  startLiveness(sessionId: string, args: Record<string, never>): Promise<ReturnType<CallCoordinator['startLiveness']>>;
  captureDocument(sessionId: string, args: { tellerId: string; checklist: ClientMessage<'document:capture'>['checklist'] }): ReturnType<CallCoordinator['captureDocument']>;
  decide(sessionId: string, args: { staff: StaffIdentity; msg: ClientMessage<'call:decide'> }): Promise<DecisionResult>;
}

export function defineCallOperations(dispatch: CallDispatch, calls: CallCoordinator, decisions: DecisionDeps): CallOps {
  const endArgs = z.object({ actor: z.string().min(1), reason: callEndedSchema.shape.reason });
  return {
    media: dispatch.define('media', mediaArgsSchema, (sessionId, a) => runMediaMessage(calls, sessionId, a.participant, a.event, a.payload as never)),
    end: dispatch.define('end', endArgs, async (sessionId, a) => (await calls.end(sessionId, a.actor, a.reason)) ?? null),
    hangUp: dispatch.define('hangUp', endArgs, async (sessionId, a) => {
      calls.require(sessionId);
      await calls.end(sessionId, a.actor, a.reason);
    }),
    rejoin: dispatch.define('rejoin', z.object({ participant: participantSchema, actor: z.string().min(1) }), (sessionId, a) =>
      calls.rejoin(sessionId, a.participant, a.actor),
    ),
    startLiveness: dispatch.define('startLiveness', z.object({}), async (sessionId) => calls.startLiveness(sessionId)),
    captureDocument: dispatch.define(
      'captureDocument',
      z.object({ tellerId: z.string().min(1), checklist: clientMessages['document:capture'].shape.checklist }),
      (sessionId, a) => calls.captureDocument(sessionId, a.tellerId, a.checklist),
    ),
    // The decision reads the call's identity checks and ends the call: both live on this node.
    decide: dispatch.define('decide', z.object({ staff: staffSchema, msg: clientMessages['call:decide'] }), (sessionId, a) =>
      decideCall({ ...decisions, log: decisions.log.child({ sessionId }) }, a.staff, sessionId, a.msg),
    ),
  };
}
