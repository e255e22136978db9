/**
 * The socket.io protocol, declared once and imported by the server (signaling/) and the pages
 * (client-web/). Every message a client sends is parsed with the zod schema of its event before
 * any handler sees it; server messages have schemas too so the pages can check what they get.
 *
 * This module must stay free of Node-only imports: Vite bundles it into the browser pages.
 */
import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// Shared vocabulary

export const BUSINESS_TYPES = ['corporate_account_opening', 'wealth_product', 'consultation'] as const;
export const businessTypeSchema = z.enum(BUSINESS_TYPES);
export type BusinessType = z.infer<typeof businessTypeSchema>;

/** BCP 47 primary language tags we route on ("de", "en", "fr" ...). */
export const languageSchema = z
  .string()
  .regex(/^[a-z]{2,3}$/, 'a two- or three-letter lower-case language code such as "en"');
export type Language = z.infer<typeof languageSchema>;

export const SESSION_STATES = [
  'created',
  'queued',
  'offered',
  'in_call',
  'reconnecting',
  'decided',
  'ended',
  'abandoned',
  'expired',
  'failed',
] as const;
export const sessionStateSchema = z.enum(SESSION_STATES);
export type SessionState = z.infer<typeof sessionStateSchema>;

export const TELLER_STATES = ['offline', 'available', 'reserved', 'busy', 'wrap_up', 'away'] as const;
export const tellerStateSchema = z.enum(TELLER_STATES);
export type TellerState = z.infer<typeof tellerStateSchema>;

/** Offer (reservation) lifecycle, as in Twilio TaskRouter's reservations. */
export const OFFER_STATES = ['pending', 'accepted', 'rejected', 'timeout', 'canceled'] as const;
export const offerStateSchema = z.enum(OFFER_STATES);
export type OfferState = z.infer<typeof offerStateSchema>;

/** Machine-readable error codes, the same on HTTP bodies, socket acks and connect errors. */
export const ERROR_CODES = [
  'bad_request',
  'too_large',
  'unauthorized',
  'token_invalid',
  'token_expired',
  'token_reused',
  'forbidden',
  'wrong_namespace',
  'not_found',
  'invalid_state',
  'conflict',
  'rate_limited',
  'unavailable',
  'internal',
] as const;
export const errorCodeSchema = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof errorCodeSchema>;

export const protocolErrorSchema = z.object({ code: errorCodeSchema, message: z.string() });
export type ProtocolError = z.infer<typeof protocolErrorSchema>;

/** Every acknowledgement has this shape: a typed result or a typed error, never a throw. */
export type Ack<T> = { ok: true; data: T } | { ok: false; error: ProtocolError };
export type AckFn<T> = (reply: Ack<T>) => void;

/** Largest client message the server reads, in bytes of JSON (rtpParameters are a few KB). */
export const MAX_MESSAGE_BYTES = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Media (mediasoup) payloads. mediasoup validates the deep structure itself; here we check the
// shape and bound the size so nothing unexpected reaches it.

const id = z.string().min(1).max(64);
const looseObject = z.looseObject({});

export const dtlsParametersSchema = z.looseObject({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z
    .array(z.object({ algorithm: z.string().max(16), value: z.string().max(256) }))
    .min(1)
    .max(8),
});

export const rtpParametersSchema = z.looseObject({
  mid: z.string().max(32).optional(),
  codecs: z.array(looseObject).min(1).max(16),
  headerExtensions: z.array(looseObject).max(32).optional(),
  encodings: z.array(looseObject).max(8).optional(),
  rtcp: looseObject.optional(),
});

export const rtpCapabilitiesSchema = z.looseObject({
  codecs: z.array(looseObject).max(64).optional(),
  headerExtensions: z.array(looseObject).max(64).optional(),
});

export const mediaKindSchema = z.enum(['audio', 'video']);
export type MediaKind = z.infer<typeof mediaKindSchema>;

export const transportDirectionSchema = z.enum(['send', 'recv']);

// ---------------------------------------------------------------------------------------------
// Decisions. The reason codes are the list the teller picks from; the record carries the code.

export const DECISIONS = ['approved', 'rejected'] as const;
export const decisionSchema = z.enum(DECISIONS);
export type Decision = z.infer<typeof decisionSchema>;

export const DECISION_REASONS = {
  approved: ['identity_verified'],
  rejected: ['face_mismatch', 'liveness_failed', 'document_invalid', 'poor_quality', 'customer_withdrew', 'suspected_fraud', 'other'],
} as const satisfies Record<Decision, readonly string[]>;
export const decisionReasonSchema = z.enum([...DECISION_REASONS.approved, ...DECISION_REASONS.rejected]);
export type DecisionReason = z.infer<typeof decisionReasonSchema>;

/** The document's security features the teller confirms having seen (video-identification checklists). */
export const DOCUMENT_CHECKS = ['hologram', 'personalisation', 'material', 'securityPrint'] as const;
export const documentChecklistSchema = z
  .object({ hologram: z.boolean(), personalisation: z.boolean(), material: z.boolean(), securityPrint: z.boolean() })
  .strict();

export const decideSchema = z
  .object({
    decision: decisionSchema,
    reason: decisionReasonSchema,
    /** The teller's free text; evidence keeps it, the record does not. */
    note: z.string().trim().max(500).optional(),
  })
  .strict()
  .refine((d) => (DECISION_REASONS[d.decision] as readonly string[]).includes(d.reason), {
    message: 'this reason does not go with this decision',
    path: ['reason'],
  });

/** Six digits; spaces the customer types between groups are dropped. */
export const otpCodeSchema = z
  .string()
  .max(32)
  .transform((c) => c.replace(/\s+/g, ''))
  .pipe(z.string().regex(/^[0-9]{6}$/, 'six digits'));

export const COSIGN_VERDICTS = ['cosign', 'refuse'] as const;
export const cosignSchema = z
  .object({
    sessionId: z.string().uuid(),
    verdict: z.enum(COSIGN_VERDICTS),
    /** Required when refusing: the teller and the auditor must learn why. */
    note: z.string().trim().max(500).optional(),
  })
  .strict()
  .refine((c) => c.verdict === 'cosign' || (c.note?.length ?? 0) > 0, { message: 'say why you refuse', path: ['note'] });

/** The customer's post-call rating: 1 (poor) .. 5 (excellent), and optionally a comment in their words. */
export const RATING_COMMENT_MAX = 1000;
export const ratingSubmitSchema = z
  .object({
    score: z.number().int().min(1).max(5),
    /** Customer text: the ledger keeps it, logs never carry it. An empty comment counts as none. */
    comment: z.string().trim().max(RATING_COMMENT_MAX).optional(),
  })
  .strict();
export const ratingResultSchema = z.object({ sessionId: z.string(), score: z.number().int().min(1).max(5), ledgerIndex: z.number().int() });
export type RatingResult = z.infer<typeof ratingResultSchema>;

export interface TransportOptions {
  id: string;
  iceParameters: unknown;
  iceCandidates: unknown[];
  dtlsParameters: unknown;
}

export interface ConsumerOptions {
  id: string;
  producerId: string;
  kind: MediaKind;
  rtpParameters: unknown;
}

// ---------------------------------------------------------------------------------------------
// Client → server messages (validated on the server)

export const clientMessages = {
  // customer
  'queue:join': z.object({ consent: z.literal(true) }).strict(),
  'queue:leave': z.object({}).strict(),
  // teller
  'teller:availability': z.object({ status: z.enum(['available', 'away']) }).strict(),
  'offer:accept': z.object({ offerId: id }).strict(),
  'offer:decline': z.object({ offerId: id }).strict(),
  // both sides, during a call
  'media:capabilities': z.object({}).strict(),
  'media:createTransport': z.object({ direction: transportDirectionSchema }).strict(),
  'media:connectTransport': z.object({ transportId: id, dtlsParameters: dtlsParametersSchema }).strict(),
  'media:produce': z
    .object({ transportId: id, kind: mediaKindSchema, rtpParameters: rtpParametersSchema })
    .strict(),
  'media:consume': z
    .object({ transportId: id, producerId: id, rtpCapabilities: rtpCapabilitiesSchema })
    .strict(),
  'media:resumeConsumer': z.object({ consumerId: id }).strict(),
  'media:restartIce': z.object({ transportId: id }).strict(),
  'call:hangup': z.object({}).strict(),
  // teller, during a call: issues the verification record
  'call:decide': decideSchema,
  // teller, during a call: the server starts its liveness challenges for the customer
  'liveness:start': z.object({}).strict(),
  // teller, during a call: capture the ID document the customer holds up, with what the teller saw on it
  'document:capture': z.object({ checklist: documentChecklistSchema }).strict(),
  // teller, during a call: the server issues a one-time code and hands it to the bank's system
  'otp:send': z.object({}).strict(),
  // customer, during a call: the code the customer received from the bank
  'otp:submit': z.object({ code: otpCodeSchema }).strict(),
  // supervisor: the decisions waiting for a co-signature
  'cosign:list': z.object({}).strict(),
  // supervisor: co-sign or refuse a teller's approval under dual control
  'cosign:decide': cosignSchema,
  // customer, once the answered call has ended: how satisfied they were (once per session)
  'rating:submit': ratingSubmitSchema,
} as const;

export type ClientMessageName = keyof typeof clientMessages;
export type ClientMessage<E extends ClientMessageName> = z.infer<(typeof clientMessages)[E]>;

/** What each acknowledgement carries on success. */
export interface ClientAckData {
  'queue:join': QueuePosition;
  'queue:leave': { state: SessionState };
  'teller:availability': { state: TellerState };
  'offer:accept': { callId: string; sessionId: string };
  'offer:decline': { state: TellerState };
  'media:capabilities': { rtpCapabilities: unknown };
  'media:createTransport': TransportOptions;
  'media:connectTransport': Record<string, never>;
  'media:produce': { producerId: string };
  'media:consume': ConsumerOptions;
  'media:resumeConsumer': Record<string, never>;
  'media:restartIce': { iceParameters: unknown };
  'call:hangup': { state: SessionState };
  'call:decide': DecisionResult;
  'liveness:start': LivenessView;
  'document:capture': DocumentCaptureResult;
  'otp:send': { challengeId: string; expiresAt: number };
  'otp:submit': OtpResult;
  'cosign:list': { pending: PendingDecision[] };
  'cosign:decide': DecisionResult;
  'rating:submit': RatingResult;
}

export const OTP_RESULTS = ['verified', 'wrong', 'expired', 'locked', 'no_code'] as const;
export const otpResultSchema = z.object({ result: z.enum(OTP_RESULTS), attemptsLeft: z.number().int().min(0) });
export type OtpResult = z.infer<typeof otpResultSchema>;

/** A teller's approval waiting for a supervisor under dual control, with what the supervisor needs to judge it. */
export const pendingDecisionSchema = z.object({
  sessionId: z.string(),
  businessType: businessTypeSchema,
  /** The bank's reference, masked (the supervisor does not need the full number). */
  customerRef: z.string(),
  amount: z.object({ value: z.string(), currency: z.string() }).nullable(),
  tellerId: z.string(),
  tellerScope: z.string(),
  reason: z.string(),
  note: z.string().nullable(),
  decidedAt: z.number(),
  /** The identity evidence and the recording the record will carry. */
  evidence: z.record(z.string(), z.unknown()),
  /** Where the supervisor can watch the recording (staff-authenticated; null: the call has no recording). */
  recordingUrl: z.string().nullable(),
});
export type PendingDecision = z.infer<typeof pendingDecisionSchema>;

export const cosignClosedSchema = z.object({ sessionId: z.string(), verdict: z.enum(COSIGN_VERDICTS), supervisorId: z.string() });

export interface DocumentCaptureResult {
  /** The still the server took from its own copy of the video, by SHA-256 (in the blob store). */
  imageSha256: string;
  faceCount: number;
  /** The document's portrait (the smallest face) against the ID photo and the live face. */
  documentFace: { matchesReference: boolean; distanceToReference: number; matchesLive: boolean | null; distanceToLive: number | null } | null;
}

export const decisionResultSchema = z.object({
  sessionId: z.string(),
  state: sessionStateSchema,
  decision: decisionSchema,
  /** `awaiting_cosign`: dual control applies and a supervisor must co-sign before the record is issued. */
  status: z.enum(['issued', 'awaiting_cosign']),
  /** The record's id (JWT jti) and its entry in the ledger, once issued. */
  recordId: z.string().nullable(),
  ledgerIndex: z.number().int().nullable(),
  /** The call's recording as the record names it (null: none could be made; that is evidence). */
  recording: z.object({ sha256: z.string(), durationMs: z.number() }).nullable(),
  /** Under dual control, once answered: who co-signed or refused. */
  supervisorId: z.string().nullable(),
});
export type DecisionResult = z.infer<typeof decisionResultSchema>;

export type ClientToServerEvents = {
  [E in ClientMessageName]: (payload: ClientMessage<E>, ack: AckFn<ClientAckData[E]>) => void;
};

// ---------------------------------------------------------------------------------------------
// Server → client messages

export const queuePositionSchema = z.object({
  /** 1 = next to be served among sessions with the same skills. */
  position: z.number().int().min(1),
  /** Estimated seconds until a teller answers, from recent answer times and tellers on shift. */
  estimatedWaitS: z.number().int().min(0),
});
export type QueuePosition = z.infer<typeof queuePositionSchema>;

export const sessionInfoSchema = z.object({
  sessionId: z.string(),
  state: sessionStateSchema,
  businessType: businessTypeSchema,
  language: languageSchema,
  /** Lets a dropped customer page reconnect after its single-use join token was spent. */
  resumeToken: z.string().optional(),
});
export type SessionInfo = z.infer<typeof sessionInfoSchema>;

export const tellerInfoSchema = z.object({
  tellerId: z.string(),
  displayName: z.string(),
  state: tellerStateSchema,
  skills: z.object({ businessTypes: z.array(businessTypeSchema), languages: z.array(languageSchema) }),
  /** When wrap-up ends (epoch ms), while state is wrap_up. */
  wrapUpUntil: z.number().optional(),
});
export type TellerInfo = z.infer<typeof tellerInfoSchema>;

export const offerSchema = z.object({
  offerId: z.string(),
  sessionId: z.string(),
  businessType: businessTypeSchema,
  language: languageSchema,
  priority: z.number().int(),
  waitedMs: z.number().int().min(0),
  /** Epoch ms after which the offer times out and the session goes back to the queue. */
  expiresAt: z.number().int(),
});
export type Offer = z.infer<typeof offerSchema>;

export const offerClosedSchema = z.object({
  offerId: z.string(),
  state: offerStateSchema,
  reason: z.string(),
});

export const callStartSchema = z.object({
  callId: z.string(),
  sessionId: z.string(),
  role: z.enum(['customer', 'teller']),
  peerName: z.string(),
});
export type CallStart = z.infer<typeof callStartSchema>;

export const newProducerSchema = z.object({ producerId: z.string(), kind: mediaKindSchema });

export const callEndedSchema = z.object({
  callId: z.string(),
  sessionId: z.string(),
  reason: z.enum(['customer_hangup', 'teller_hangup', 'decided', 'peer_lost', 'server_shutdown', 'failed']),
});
export type CallEnded = z.infer<typeof callEndedSchema>;

// ---------------------------------------------------------------------------------------------
// Identity checks during the call (the server's own analysis of the customer's video)

/** Kept equal to src/identity/liveness.ts CHALLENGE_TYPES and quality.ts GUIDANCE_CODES (a test checks). */
export const CHALLENGE_TYPES = ['turn_left', 'turn_right', 'blink', 'move_closer'] as const;
export const challengeTypeSchema = z.enum(CHALLENGE_TYPES);
export const GUIDANCE_CODES = [
  'show_your_face',
  'only_you_in_picture',
  'more_light',
  'less_light',
  'hold_still_clean_lens',
  'move_closer',
  'center_your_face',
  'check_your_camera',
] as const;
export const guidanceCodeSchema = z.enum(GUIDANCE_CODES);

export const identityReportSchema = z.object({
  t: z.number(),
  faceCount: z.number().int().min(0),
  verdict: z.enum(['match', 'no_match', 'no_face', 'multiple_faces', 'unusable']),
  similarity: z.number().min(0).max(1).nullable(),
  distance: z.number().min(0).nullable(),
  decision: z.enum(['match', 'no_match', 'inconclusive']),
  qualityIssues: z.array(z.string()),
  approvalAllowedByQuality: z.boolean(),
  yaw: z.number().nullable(),
  analysisMs: z.number(),
});
export type IdentityReport = z.infer<typeof identityReportSchema>;

export const challengeViewSchema = z.object({
  challengeId: z.string(),
  type: challengeTypeSchema,
  status: z.enum(['pending', 'passed', 'failed']),
  reason: z.enum(['ok', 'waiting', 'no_baseline', 'not_performed', 'face_lost', 'identity_mismatch']),
  deadline: z.number(),
});
export type ChallengeView = z.infer<typeof challengeViewSchema>;

export const livenessViewSchema = z.object({
  status: z.enum(['not_started', 'running', 'passed', 'failed']),
  challenges: z.array(challengeViewSchema),
});
export type LivenessView = z.infer<typeof livenessViewSchema>;

/** Whether the server checks this call's identity, and if not, why. */
export const identityStatusSchema = z.object({
  active: z.boolean(),
  reason: z.enum(['checking', 'no_reference_photo', 'engine_unavailable', 'no_customer_video']),
});

export const otpRequestedSchema = z.object({ expiresAt: z.number() });

// ---------------------------------------------------------------------------------------------
// Supervisor board: one snapshot of the floor, pushed on connect and on changes (coalesced)

const satisfactionSchema = z.object({ count: z.number().int().min(0), average: z.number().min(1).max(5).nullable() });

export const boardSnapshotSchema = z.object({
  /** Server time of the snapshot (epoch ms); durations below are as of this instant. */
  at: z.number(),
  /** Waiting sessions (queued or being offered) by the skills they need. */
  queues: z.array(
    z.object({
      businessType: businessTypeSchema,
      language: languageSchema,
      length: z.number().int().min(0),
      /** Of `length`, how many are being offered to a teller right now. */
      offered: z.number().int().min(0),
      oldestWaitS: z.number().int().min(0),
    }),
  ),
  /** Every teller the store knows (offline ones too), with their satisfaction so far. */
  tellers: z.array(
    z.object({
      tellerId: z.string(),
      displayName: z.string(),
      state: tellerStateSchema,
      /** Seconds into the current call (null: not in a call). */
      callDurationS: z.number().int().min(0).nullable(),
      satisfaction: satisfactionSchema,
    }),
  ),
  /**
   * Service level, abandonment, answered and connection rate from the call statistics; null while
   * this server has no source for them (the board shows "n/a" rather than a made-up figure).
   */
  callStats: z
    .object({
      serviceLevel: z.number().min(0).max(1).nullable(),
      abandonmentRate: z.number().min(0).max(1).nullable(),
      answered: z.number().int().min(0),
      connectionRate: z.number().min(0).max(1).nullable(),
    })
    .nullable(),
  /** Over every rated session. */
  satisfaction: satisfactionSchema,
});
export type BoardSnapshot = z.infer<typeof boardSnapshotSchema>;

export type ServerToClientEvents = {
  'session:info': (info: SessionInfo) => void;
  'queue:position': (pos: QueuePosition) => void;
  'teller:info': (info: TellerInfo) => void;
  'offer:new': (offer: Offer) => void;
  'offer:closed': (closed: z.infer<typeof offerClosedSchema>) => void;
  'call:start': (start: CallStart) => void;
  'media:newProducer': (p: z.infer<typeof newProducerSchema>) => void;
  'call:ended': (ended: CallEnded) => void;
  /** Teller: one per analysed frame of the customer's video. */
  'identity:report': (report: IdentityReport) => void;
  'identity:status': (status: z.infer<typeof identityStatusSchema>) => void;
  'identity:liveness': (view: LivenessView) => void;
  /** Customer: what to fix in the picture (null: nothing). */
  'identity:guidance': (g: { code: z.infer<typeof guidanceCodeSchema> | null }) => void;
  /** Customer: the liveness challenge to perform now (null: none). */
  'liveness:prompt': (p: { challenge: ChallengeView | null }) => void;
  /** Customer: the bank has sent a one-time code to the registered phone or e-mail; type it in. */
  'otp:requested': (r: z.infer<typeof otpRequestedSchema>) => void;
  /** Teller: the customer's attempt at the one-time code (the result only, never the code). */
  'otp:status': (r: OtpResult) => void;
  /** Supervisor: a decision now waits for co-signing. */
  'cosign:pending': (d: PendingDecision) => void;
  /** Supervisor: a pending decision was co-signed or refused (by anyone). */
  'cosign:closed': (c: z.infer<typeof cosignClosedSchema>) => void;
  /** Supervisor: the board (queues, tellers, service figures, satisfaction), on connect and on changes. */
  'board:update': (b: BoardSnapshot) => void;
  /** Teller: the supervisor's answer to the teller's approval. */
  'decision:final': (r: DecisionResult) => void;
  /** A message the server could not take and that had no acknowledgement to answer through. */
  'protocol:error': (err: ProtocolError & { event?: string }) => void;
};

/** Auth payloads sent in socket.io's handshake `auth` field. */
export const customerAuthSchema = z.object({ token: z.string().min(1).max(512) }).strict();
export const staffAuthSchema = z.object({ token: z.string().min(1).max(4096) }).strict();

export const NAMESPACES = { customer: '/customer', teller: '/teller', supervisor: '/supervisor' } as const;
