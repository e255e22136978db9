/**
 * The teller console (/teller/): sign in → availability → offer with countdown → call → wrap-up.
 * The staff JWT from POST /api/auth/login is kept in sessionStorage (this tab only) until it expires.
 */
import '../lib/base.css';
import './teller.css';
import {
  DECISION_REASONS,
  DOCUMENT_CHECKS,
  type CallEnded,
  type Decision,
  type DecisionResult,
  type OtpResult,
  type DecisionReason,
  type ErrorCode,
  type IdentityReport,
  type LivenessView,
  type Offer,
  type TellerInfo,
  type TellerState,
} from '../../signaling/protocol.ts';
import { CallMedia } from '../lib/call.ts';
import { BUSINESS_TYPE_LABELS, byId, byTestId, exposeTestHook, formatDuration, languageLabel, setText, showView } from '../lib/dom.ts';
import { getLocalMedia, stopStream } from '../lib/media.ts';
import { setupStaffLogin, type StaffLogin } from '../lib/staff-login.ts';
import { connect, connectErrorOf, listen, request, RequestError, type AppSocket } from '../lib/socket.ts';
import { drawScoreChartFrame } from '../lib/score-chart.ts';

type Login = StaffLogin;

const STATE_LABELS: Record<TellerState, string> = {
  offline: 'Offline',
  available: 'Available',
  reserved: 'Offer pending',
  busy: 'In a call',
  wrap_up: 'Wrap-up',
  away: 'Away',
};

const END_REASONS: Record<CallEnded['reason'], string> = {
  customer_hangup: 'The customer hung up.',
  teller_hangup: 'You ended the call.',
  decided: 'You decided: the call is closed and its recording stored.',
  peer_lost: 'The connection to the customer was lost.',
  server_shutdown: 'The server is shutting down.',
  failed: 'The call failed.',
};

const REASON_LABELS: Record<DecisionReason, string> = {
  identity_verified: 'Identity verified',
  face_mismatch: 'Face does not match the ID photo',
  liveness_failed: 'Liveness check failed',
  document_invalid: 'ID document not valid',
  poor_quality: 'Picture or sound too poor',
  customer_withdrew: 'Customer withdrew',
  suspected_fraud: 'Suspected fraud',
  other: 'Other (see note)',
};

const CONNECT_ERRORS: Partial<Record<ErrorCode, string>> = {
  unauthorized: 'Please sign in.',
  token_invalid: 'Your sign-in is not valid. Please sign in again.',
  token_expired: 'Your sign-in has expired. Please sign in again.',
  forbidden: 'This account cannot take calls (teller role required).',
  wrong_namespace: 'That token is not a staff sign-in.',
};

let login: Login | undefined;
let socket: AppSocket | undefined;
let info: TellerInfo | undefined;
let offer: Offer | undefined;
let offerReceivedAt = 0;
let call: CallMedia | undefined;
let callStartedAt = 0;
let localStream: MediaStream | undefined;
let phase: 'login' | 'idle' | 'offer' | 'call' | 'wrap_up' = 'login';
let ticker: number | undefined;
/** The decision of the current call, once the server has issued its record. */
let decided: Decision | undefined;
/** A decision is on its way to the server (the call ends meanwhile). */
let deciding = false;

const availableButton = byTestId<HTMLButtonElement>('available');
const acceptButton = byTestId<HTMLButtonElement>('accept');
const declineButton = byTestId<HTMLButtonElement>('decline');
const endCallButton = byTestId<HTMLButtonElement>('end-call');
const callStatus = byTestId('call-status');
const banner = byId('banner');

exposeTestHook({
  page: 'teller',
  state: () => (phase === 'login' ? 'login' : `${phase}:${info?.state ?? 'offline'}`),
  stats: async () => (call ? call.stats() : null),
});

function setBanner(text: string | undefined): void {
  banner.hidden = !text;
  setText(banner, text ?? '');
}

// ---------------------------------------------------------------------------------------------
// Sign-in

const staffLogin = setupStaffLogin({
  storageKey: 'videoteller.staff',
  role: 'teller',
  wrongRoleMessage: 'This console is for tellers; your account cannot take calls.',
  onSignedIn: (l) => signedIn(l),
});

function signedIn(l: Login): void {
  login = l;
  setText(byId('me'), l.staff.displayName);
  setText(byId('skills-bt'), l.staff.skills.businessTypes.map((b) => BUSINESS_TYPE_LABELS[b] ?? b).join(', '));
  setText(byId('skills-lang'), l.staff.skills.languages.map(languageLabel).join(', '));
  byId('logout').hidden = false;
  phase = 'idle';
  showView('view-console');
  render();
  openSocket(l.token);
  ticker ??= window.setInterval(tick, 250);
}

function signOut(message?: string): void {
  staffLogin.signOut(message);
  call?.close();
  call = undefined;
  stopStream(localStream);
  localStream = undefined;
  socket?.off();
  socket?.disconnect();
  socket = undefined;
  login = undefined;
  info = undefined;
  offer = undefined;
  phase = 'login';
  byId('logout').hidden = true;
  byId('state').hidden = true;
  setText(byId('me'), '');
  setBanner(undefined);
  showView('view-login');
}
byId('logout').addEventListener('click', () => signOut());

// ---------------------------------------------------------------------------------------------
// Connection

function openSocket(token: string): void {
  const s = connect('/teller', { token: () => token });
  socket = s;
  s.on('connect', () => setBanner(undefined));
  s.on('connect_error', (err: Error & { data?: unknown }) => {
    const refused = connectErrorOf(err);
    if (!refused) {
      setBanner('Cannot reach the server. Retrying…');
      return;
    }
    byTestId('login-error').dataset.code = refused.code;
    signOut(CONNECT_ERRORS[refused.code] ?? refused.message);
  });
  s.on('disconnect', (reason) => {
    if (reason === 'io client disconnect') return;
    setBanner('Connection lost. Reconnecting…');
  });

  listen(s, 'teller:info', (i) => {
    info = i;
    if (i.state === 'away' && localStream && phase === 'idle') {
      // Missed offers made us away, or another tab set it: no need to keep the camera on.
      stopStream(localStream);
      localStream = undefined;
    }
    render();
  });

  listen(s, 'offer:new', (o) => {
    offer = o;
    offerReceivedAt = Date.now();
    phase = 'offer';
    acceptButton.disabled = false;
    declineButton.disabled = false;
    byId('offer-closed').hidden = true;
    render();
  });

  listen(s, 'offer:closed', (closed) => {
    if (offer?.offerId !== closed.offerId) return;
    offer = undefined;
    if (phase === 'offer') phase = 'idle';
    if (closed.state !== 'accepted') {
      const text = byId('offer-closed');
      text.textContent =
        closed.state === 'timeout' ? 'The offer timed out and went back to the queue.' : closed.state === 'canceled' ? 'The customer left before the call started.' : 'Offer declined.';
      text.dataset.state = closed.state;
      text.hidden = false;
    }
    render();
  });

  listen(s, 'call:start', (start) => void startCall(start.peerName));
  listen(s, 'identity:status', (st) => {
    const texts = {
      checking: 'Checking the face on the live video against the registered ID photo.',
      no_reference_photo: 'No ID photo was registered for this session: the server cannot check the face.',
      engine_unavailable: 'The face check is unavailable on the server right now.',
      no_customer_video: 'The customer’s video cannot be analysed.',
    };
    const el = byTestId('identity-status');
    el.dataset.reason = st.reason;
    setText(el, texts[st.reason]);
    byTestId<HTMLButtonElement>('liveness-start').disabled = !st.active;
  });
  listen(s, 'identity:report', (r) => showIdentityReport(r));
  listen(s, 'identity:liveness', (v) => showLiveness(v));
  listen(s, 'call:ended', (ended) => endCall(END_REASONS[ended.reason]));
  listen(s, 'otp:status', (r) => showOtpStatus(r.result === 'wrong' ? `${OTP_STATUS_TEXT.wrong} ${r.attemptsLeft} tries left.` : OTP_STATUS_TEXT[r.result], r.result));
  listen(s, 'decision:final', (res) => {
    if (decided) showDecision(res);
  });
  listen(s, 'protocol:error', (err) => console.warn('videoteller: protocol error', err));
}

// ---------------------------------------------------------------------------------------------
// Availability, offers

availableButton.addEventListener('click', async () => {
  if (!socket) return;
  const wantAvailable = availableButton.getAttribute('aria-pressed') !== 'true';
  availableButton.disabled = true;
  const mediaError = byTestId('media-error');
  try {
    if (wantAvailable) {
      // The camera must work before calls are offered: start it now (also a user gesture for autoplay).
      try {
        localStream ??= await getLocalMedia();
        mediaError.hidden = true;
      } catch (err) {
        mediaError.textContent = (err as Error).message;
        mediaError.hidden = false;
        return;
      }
    }
    const { state } = await request(socket, 'teller:availability', { status: wantAvailable ? 'available' : 'away' });
    if (info) info = { ...info, state };
    if (!wantAvailable && phase === 'idle') {
      stopStream(localStream);
      localStream = undefined;
    }
  } catch (err) {
    setBanner(`Could not change availability: ${(err as Error).message}`);
  } finally {
    availableButton.disabled = false;
    render();
  }
});

acceptButton.addEventListener('click', async () => {
  if (!socket || !offer) return;
  acceptButton.disabled = true;
  declineButton.disabled = true;
  try {
    localStream ??= await getLocalMedia();
    await request(socket, 'offer:accept', { offerId: offer.offerId });
  } catch (err) {
    const text = byId('offer-closed');
    text.textContent = `Could not accept: ${err instanceof RequestError ? `${err.message} (${err.code})` : (err as Error).message}`;
    text.hidden = false;
    offer = undefined;
    if (phase === 'offer') phase = 'idle';
    render();
  }
});

declineButton.addEventListener('click', async () => {
  if (!socket || !offer) return;
  acceptButton.disabled = true;
  declineButton.disabled = true;
  const offerId = offer.offerId;
  try {
    await request(socket, 'offer:decline', { offerId });
  } catch (err) {
    setBanner(`Could not decline: ${(err as Error).message}`);
  } finally {
    if (offer?.offerId === offerId) offer = undefined;
    if (phase === 'offer') phase = 'idle';
    render();
  }
});

// ---------------------------------------------------------------------------------------------
// Call

async function startCall(peerName: string): Promise<void> {
  if (!socket) return;
  call?.close();
  // A reconnect restarts the media of the same call: keep what was decided and measured.
  if (phase !== 'call') {
    resetDecision();
    resetOtp();
    resetIdentity();
  }
  offer = undefined;
  phase = 'call';
  callStartedAt = Date.now();
  endCallButton.disabled = false;
  byId('offer-closed').hidden = true;
  render();
  setText(callStatus, `Connecting to ${peerName}…`);
  try {
    localStream ??= await getLocalMedia();
  } catch (err) {
    setText(callStatus, (err as Error).message);
    return;
  }
  byId<HTMLVideoElement>('local-video').srcObject = localStream;
  const media = new CallMedia({
    socket,
    localStream,
    remoteVideo: byId<HTMLVideoElement>('remote-video'),
    remoteAudio: byId<HTMLAudioElement>('remote-audio'),
    onState: (state) => {
      const texts = { connecting: `Connecting to ${peerName}…`, connected: `In a call with ${peerName}`, reconnecting: 'Reconnecting…', failed: 'The media connection failed.', closed: '' };
      setText(callStatus, texts[state]);
      callStatus.dataset.state = state;
    },
    onAudioBlocked: () => {
      byId('unmute').hidden = false;
    },
    onError: (err) => console.error('videoteller: call media', err),
  });
  call = media;
  try {
    await media.start();
  } catch (err) {
    if (call === media) {
      setText(callStatus, 'The video connection could not be set up.');
      console.error('videoteller: call setup', err);
    }
  }
}

byId('unmute').addEventListener('click', () => {
  call?.resumeAudio().then(
    () => (byId('unmute').hidden = true),
    () => {},
  );
});

endCallButton.addEventListener('click', async () => {
  if (!socket) return;
  endCallButton.disabled = true;
  try {
    await request(socket, 'call:hangup', {});
    endCall(END_REASONS.teller_hangup);
  } catch (err) {
    if (phase !== 'call') return; // call:ended came first
    endCallButton.disabled = false;
    setBanner(`Could not end the call: ${(err as Error).message}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Identity: the server's live face match, picture quality and liveness challenges

const VERDICT_WARNINGS: Partial<Record<IdentityReport['verdict'], string>> = {
  no_face: 'No face in the picture.',
  multiple_faces: 'More than one face in the picture: only the customer may be on camera.',
};
const DECISION_LABELS: Record<IdentityReport['decision'], string> = { match: 'Match', no_match: 'No match', inconclusive: 'Inconclusive' };
const CHALLENGE_LABELS: Record<LivenessView['challenges'][number]['type'], string> = {
  turn_left: 'Turn head left',
  turn_right: 'Turn head right',
  blink: 'Blink',
  move_closer: 'Move closer',
};
/** Similarity per analysed frame (null: no usable face), for the chart. */
let scoreSeries: { t: number; s: number | null }[] = [];

function resetIdentity(): void {
  scoreSeries = [];
  const panel = byTestId('identity');
  panel.hidden = false;
  delete panel.dataset.firstReportAt;
  delete panel.dataset.firstMatchAt;
  setText(byTestId('identity-status'), 'Waiting for the customer’s video…');
  const decision = byTestId('match-decision');
  decision.dataset.decision = '';
  setText(decision, '–');
  setText(byTestId('match-score'), '–');
  byTestId('face-warning').hidden = true;
  setText(byTestId('quality-issues'), '');
  byTestId<HTMLButtonElement>('liveness-start').disabled = true;
  showLiveness({ status: 'not_started', challenges: [] });
  for (const c of DOCUMENT_CHECKS) byTestId<HTMLInputElement>(`doc-${c}`).checked = false;
  byTestId('document-result').hidden = true;
  drawScoreChart();
}

function showIdentityReport(r: IdentityReport): void {
  // When the first analysis and the first match arrived (bench/call-setup reads these).
  const panel = byTestId('identity');
  panel.dataset.firstReportAt ??= String(Date.now());
  if (r.decision === 'match') panel.dataset.firstMatchAt ??= String(Date.now());
  scoreSeries.push({ t: r.t, s: r.similarity });
  if (scoreSeries.length > 600) scoreSeries.shift();
  const decision = byTestId('match-decision');
  decision.dataset.decision = r.decision;
  setText(decision, DECISION_LABELS[r.decision]);
  setText(byTestId('match-score'), r.similarity === null ? '–' : `${Math.round(r.similarity * 100)}%`);
  const warning = byTestId('face-warning');
  const text = VERDICT_WARNINGS[r.verdict];
  warning.hidden = !text;
  warning.dataset.verdict = r.verdict;
  setText(warning, text ?? '');
  setText(byTestId('quality-issues'), r.qualityIssues.length ? `Picture: ${r.qualityIssues.join('; ')}` : '');
  drawScoreChart();
}

function showLiveness(v: LivenessView): void {
  const status = byTestId('liveness-status');
  status.dataset.status = v.status;
  setText(status, v.status.replace('_', ' '));
  byTestId('liveness-challenges').replaceChildren(
    ...v.challenges.map((c) => {
      const li = document.createElement('li');
      li.dataset.status = c.status;
      li.textContent = `${CHALLENGE_LABELS[c.type]}: ${c.status}${c.status === 'failed' ? ` (${c.reason.replace('_', ' ')})` : ''}`;
      return li;
    }),
  );
}

/** Similarity over the call, with the threshold (0.5) as a line: a plain canvas, no chart library. */
function drawScoreChart(): void {
  const canvas = byId<HTMLCanvasElement>('score-chart');
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const { w, h } = drawScoreChartFrame(ctx, canvas);
  if (scoreSeries.length < 2) return;
  const t0 = scoreSeries[0]!.t;
  const span = Math.max(30_000, scoreSeries[scoreSeries.length - 1]!.t - t0);
  ctx.strokeStyle = '#1a73e8';
  ctx.lineWidth = 2;
  ctx.beginPath();
  let pen = false;
  for (const p of scoreSeries) {
    if (p.s === null) {
      pen = false;
      continue;
    }
    const x = ((p.t - t0) / span) * w;
    const y = h - p.s * (h - 4) - 2;
    if (pen) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
    pen = true;
  }
  ctx.stroke();
}

byTestId('document-capture').addEventListener('click', async () => {
  if (!socket) return;
  const button = byTestId<HTMLButtonElement>('document-capture');
  const result = byTestId('document-result');
  button.disabled = true;
  try {
    const checklist = Object.fromEntries(DOCUMENT_CHECKS.map((c) => [c, byTestId<HTMLInputElement>(`doc-${c}`).checked])) as Record<
      (typeof DOCUMENT_CHECKS)[number],
      boolean
    >;
    const r = await request(socket, 'document:capture', { checklist });
    const face = r.documentFace;
    result.dataset.matchesReference = String(face?.matchesReference ?? false);
    setText(
      result,
      face
        ? `Captured (${r.imageSha256.slice(0, 12)}…). Portrait on the document ${face.matchesReference ? 'matches' : 'does NOT match'} the ID photo` +
            (face.matchesLive === null ? '.' : ` and ${face.matchesLive ? 'matches' : 'does NOT match'} the live face.`)
        : `Captured (${r.imageSha256.slice(0, 12)}…), but no face was found on it: hold the document closer and capture again.`,
    );
  } catch (err) {
    setText(result, `Could not capture the document: ${(err as Error).message}`);
  } finally {
    result.hidden = false;
    button.disabled = false;
  }
});

byTestId('liveness-start').addEventListener('click', async () => {
  if (!socket) return;
  const button = byTestId<HTMLButtonElement>('liveness-start');
  button.disabled = true;
  try {
    showLiveness(await request(socket, 'liveness:start', {}));
  } catch (err) {
    setText(byTestId('identity-status'), `Could not start the liveness check: ${(err as Error).message}`);
  } finally {
    button.disabled = false;
  }
});

// ---------------------------------------------------------------------------------------------
// Decision: approve or reject with a reason; the server issues the signed verification record.

const reasonSelect = byTestId<HTMLSelectElement>('decision-reason');
const approveButton = byTestId<HTMLButtonElement>('approve');
const rejectButton = byTestId<HTMLButtonElement>('reject');

function resetDecision(): void {
  decided = undefined;
  // Approving has one reason; rejecting needs the teller to pick one.
  reasonSelect.replaceChildren(new Option('Reason for rejecting…', ''), ...DECISION_REASONS.rejected.map((r) => new Option(REASON_LABELS[r], r)));
  byTestId<HTMLTextAreaElement>('decision-note').value = '';
  byTestId('decision-result').hidden = true;
  approveButton.disabled = false;
  rejectButton.disabled = false;
}

async function decide(decision: Decision): Promise<void> {
  if (!socket || decided) return;
  const result = byTestId('decision-result');
  const note = byTestId<HTMLTextAreaElement>('decision-note').value.trim();
  const reason = decision === 'approved' ? DECISION_REASONS.approved[0] : (reasonSelect.value as DecisionReason | '');
  const problem = !reason ? 'Choose the reason for rejecting.' : reason === 'other' && !note ? 'Say why in the note.' : undefined;
  if (problem || !reason) {
    setText(result, problem ?? '');
    result.hidden = false;
    return;
  }
  approveButton.disabled = true;
  rejectButton.disabled = true;
  // The decision ends the call (its recording is stored first): keep the form visible through wrap-up.
  deciding = true;
  try {
    const res = await request(socket, 'call:decide', { decision, reason, ...(note ? { note } : {}) });
    decided = res.decision;
    showDecision(res);
  } catch (err) {
    approveButton.disabled = false;
    rejectButton.disabled = false;
    setText(result, `Could not record the decision: ${err instanceof RequestError ? `${err.message} (${err.code})` : (err as Error).message}`);
    result.hidden = false;
  } finally {
    deciding = false;
    render();
  }
}

/** The decision's outcome: the record, or waiting for a supervisor's co-signature (and later its answer). */
function showDecision(res: DecisionResult): void {
  const result = byTestId('decision-result');
  result.dataset.decision = res.decision;
  result.dataset.status = res.status;
  const recording = res.recording ? ` Recording ${res.recording.sha256.slice(0, 12)}… (${Math.round(res.recording.durationMs / 1000)} s).` : ' No recording could be stored.';
  if (res.status === 'awaiting_cosign') {
    setText(result, `Approved: waiting for a supervisor to co-sign (dual control).${recording}`);
  } else {
    const by = res.supervisorId ? ` ${res.decision === 'approved' ? 'Co-signed' : 'Refused'} by supervisor ${res.supervisorId}.` : '';
    setText(result, `${res.decision === 'approved' ? 'Approved' : 'Rejected'}:${by} record ${res.recordId} signed (ledger entry ${res.ledgerIndex}).${recording}`);
  }
  result.hidden = false;
}
// ---------------------------------------------------------------------------------------------
// One-time code: the server issues it, the bank's system delivers it, the customer types it.

const OTP_STATUS_TEXT: Record<OtpResult['result'], string> = {
  verified: 'The customer confirmed the code.',
  wrong: 'The customer typed a wrong code.',
  expired: 'The code expired: send a new one.',
  locked: 'Too many wrong codes: send a new one.',
  no_code: 'No code is waiting.',
};

function showOtpStatus(text: string, result?: OtpResult['result']): void {
  const el = byTestId('otp-status');
  el.dataset.result = result ?? '';
  setText(el, text);
  el.hidden = false;
}

function resetOtp(): void {
  const el = byTestId('otp-status');
  el.hidden = true;
  el.dataset.result = '';
  byTestId<HTMLButtonElement>('otp-send').disabled = false;
}

byTestId('otp-send').addEventListener('click', () => {
  if (!socket) return;
  const button = byTestId<HTMLButtonElement>('otp-send');
  button.disabled = true;
  request(socket, 'otp:send', {})
    .then(({ expiresAt }) => showOtpStatus(`Code sent through the bank; valid until ${new Date(expiresAt).toLocaleTimeString()}.`, 'no_code'))
    .catch((err) => showOtpStatus(`The code could not be sent: ${err instanceof RequestError ? `${err.message} (${err.code})` : (err as Error).message}`))
    .finally(() => {
      button.disabled = false;
    });
});

approveButton.addEventListener('click', () => void decide('approved'));
rejectButton.addEventListener('click', () => void decide('rejected'));

function endCall(reason: string): void {
  if (phase !== 'call') return;
  call?.close();
  call = undefined;
  phase = 'wrap_up';
  setText(byId('ended-reason'), reason);
  byId('unmute').hidden = true;
  render();
}

// ---------------------------------------------------------------------------------------------
// Rendering

function render(): void {
  if (phase === 'login') return;
  const state = info?.state ?? 'offline';
  const badge = byId('state');
  badge.hidden = false;
  badge.dataset.state = state;
  setText(badge, STATE_LABELS[state]);

  const available = state !== 'away' && state !== 'offline';
  availableButton.setAttribute('aria-pressed', String(available));
  availableButton.setAttribute('aria-checked', String(available));
  setText(byId('available-label'), available ? 'Available' : 'Away');
  availableButton.disabled = phase === 'call' || phase === 'offer' || !info;

  setText(
    byTestId('idle-text'),
    state === 'available'
      ? 'Waiting for the next call that fits your skills.'
      : state === 'away' || state === 'offline'
        ? 'Set yourself available to receive calls.'
        : STATE_LABELS[state],
  );
  const preview = byId<HTMLVideoElement>('self-preview');
  if (preview.srcObject !== (localStream ?? null)) preview.srcObject = localStream ?? null;
  // During a call the own picture is in the call view.
  preview.hidden = phase === 'call' || !localStream;

  byTestId('offer').hidden = phase !== 'offer' || !offer;
  if (offer) {
    setText(byTestId('offer-business-type'), BUSINESS_TYPE_LABELS[offer.businessType] ?? offer.businessType);
    setText(byTestId('offer-language'), languageLabel(offer.language));
    setText(byTestId('offer-priority'), String(offer.priority));
  }
  byTestId('call').hidden = phase !== 'call';
  // After the call the last decision stays in view (its record, or the supervisor's answer) until the next call.
  byTestId('decision').hidden = phase !== 'call' && !decided && !deciding;
  byTestId('identity').hidden = phase !== 'call';
  byTestId('wrap-up').hidden = phase !== 'wrap_up';
  byTestId('idle').hidden = phase !== 'idle';
  tick();
}

/** Live clocks: the offer's countdown and waited time, the call timer, the wrap-up countdown. */
function tick(): void {
  const now = Date.now();
  if (phase === 'offer' && offer) {
    const left = offer.expiresAt - now;
    setText(byTestId('offer-countdown'), left > 0 ? formatDuration(left + 999) : 'expired');
    setText(byTestId('offer-waited'), formatDuration(offer.waitedMs + (now - offerReceivedAt)));
    if (left <= 0) acceptButton.disabled = true;
  }
  if (phase === 'call') setText(byTestId('call-timer'), formatDuration(now - callStartedAt));
  if (phase === 'wrap_up') {
    const until = info?.state === 'wrap_up' ? info.wrapUpUntil : undefined;
    setText(
      byTestId('wrap-up-text'),
      until && until > now
        ? `Wrap-up: next calls in ${formatDuration(until - now + 999)}.`
        : info?.state === 'available'
          ? 'You are available for the next call.'
          : `Status: ${STATE_LABELS[info?.state ?? 'offline']}.`,
    );
  }
}

const existing = staffLogin.stored();
if (existing) signedIn(existing);
else showView('view-login');
