/**
 * The customer's page (/customer/#token=...): consent → camera and microphone check → queue →
 * call → ended. The join token comes in the URL fragment, which browsers never send to a server.
 */
import '../lib/base.css';
import './customer.css';
import type { CallEnded, CHALLENGE_TYPES, ErrorCode, GUIDANCE_CODES, OtpResult } from '../../signaling/protocol.ts';
import { browserSupported, CallMedia } from '../lib/call.ts';
import { byId, byTestId, exposeTestHook, formatWait, setText, showView } from '../lib/dom.ts';
import { getLocalMedia, MediaAccessError, micLevel, stopStream } from '../lib/media.ts';
import { connect, connectErrorOf, listen, request, RequestError, type AppSocket } from '../lib/socket.ts';

type Step = 'connecting' | 'error' | 'consent' | 'check' | 'queue' | 'call' | 'ended';

/** The server's guidance codes, in the customer's words. */
const GUIDANCE_TEXT: Record<(typeof GUIDANCE_CODES)[number], string> = {
  show_your_face: 'Please show your face to the camera.',
  only_you_in_picture: 'Only you should be in the picture, please.',
  more_light: 'It is too dark: please find more light.',
  less_light: 'Too bright: please move away from the light.',
  hold_still_clean_lens: 'The picture is blurred: hold the phone still and wipe the lens.',
  move_closer: 'Please move closer to the camera.',
  center_your_face: 'Please centre your face in the picture.',
  check_your_camera: 'Your video seems frozen: please check your camera.',
};

/** The liveness challenges the server issues. The camera is not mirrored for the server: "left" is the customer's own left. */
const CHALLENGE_TEXT: Record<(typeof CHALLENGE_TYPES)[number], string> = {
  turn_left: 'Slowly turn your head to your left, then look back.',
  turn_right: 'Slowly turn your head to your right, then look back.',
  blink: 'Close your eyes for a moment, then open them.',
  move_closer: 'Move your face closer to the camera.',
};

const RESUME_KEY = 'videoteller.customer';

/** Page titles and texts for the typed refusals of the customer namespace. */
const CONNECT_ERRORS: Partial<Record<ErrorCode, { title: string; message: string }>> = {
  token_invalid: {
    title: 'This link is not valid',
    message: 'Please open the link exactly as your bank sent it to you, or ask your bank for a new one.',
  },
  token_expired: {
    title: 'This link has expired',
    message: 'Links to the video call are valid for a limited time. Please ask your bank for a new link.',
  },
  token_reused: {
    title: 'This link was already used',
    message: 'Each link works once. If the call is open in another tab or on another device, continue there; otherwise ask your bank for a new link.',
  },
  invalid_state: { title: 'This session is over', message: 'This video session has ended. Please ask your bank for a new link if you need one.' },
  wrong_namespace: { title: 'Wrong page', message: 'This link is meant for staff, not for customers.' },
  unavailable: { title: 'Service unavailable', message: 'The video service is busy right now. Please try again in a few minutes.' },
  rate_limited: { title: 'Too many attempts', message: 'Please wait a minute, then try again.' },
};

const END_REASONS: Record<CallEnded['reason'], string> = {
  customer_hangup: 'You ended the call.',
  teller_hangup: 'The teller ended the call.',
  decided: 'The teller has completed your identification. Thank you.',
  peer_lost: 'The connection was lost.',
  server_shutdown: 'The service was restarted. Please ask your bank for a new link.',
  failed: 'The call failed. Please ask your bank for a new link.',
};

const RATEABLE_ENDINGS = new Set<CallEnded['reason']>(['customer_hangup', 'teller_hangup', 'decided']);

let step: Step = 'connecting';
let socket: AppSocket | undefined;
let localStream: MediaStream | undefined;
let stopMeter: () => void = () => {};
let call: CallMedia | undefined;
let currentToken = '';
/** The customer talked to a teller in this page: after the call they are asked to rate it. */
let hadCall = false;

const banner = byId('banner');
const joinButton = byTestId<HTMLButtonElement>('join');
const hangupButton = byTestId<HTMLButtonElement>('hangup');
const callStatus = byTestId('call-status');

exposeTestHook({
  page: 'customer',
  state: () => step,
  stats: async () => (call ? call.stats() : null),
});

function go(next: Step): void {
  step = next;
  showView(`view-${next}`);
}

function showError(code: string, title: string, message: string, retry?: () => void): void {
  byTestId('error').dataset.code = code;
  setText(byId('error-title'), title);
  setText(byId('error-message'), message);
  const retryButton = byId<HTMLButtonElement>('error-retry');
  retryButton.hidden = !retry;
  retryButton.onclick = retry ? () => retry() : null;
  teardown();
  go('error');
}

function setBanner(text: string | undefined): void {
  banner.hidden = !text;
  setText(banner, text ?? '');
}

// ---------------------------------------------------------------------------------------------
// Token: from the fragment on first open; afterwards the resume token the server handed out.

function readToken(): string | undefined {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token') ?? undefined;
  const stored = readStored();
  if (fromHash) {
    // Take the token out of the address bar (history, screenshots, shared links).
    history.replaceState(null, '', location.pathname + location.search);
    // A reload of a tab that already spent this join link resumes with the resume token.
    return stored?.join === fromHash ? stored.resume : fromHash;
  }
  return stored?.resume;
}

function readStored(): { join: string; resume: string } | undefined {
  try {
    const value = JSON.parse(sessionStorage.getItem(RESUME_KEY) ?? 'null') as { join?: unknown; resume?: unknown } | null;
    return typeof value?.join === 'string' && typeof value.resume === 'string' ? { join: value.join, resume: value.resume } : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Connection

function start(): void {
  const token = readToken();
  if (!token) {
    showError('token_invalid', 'This link is not complete', 'Please open the link exactly as your bank sent it to you.');
    return;
  }
  currentToken = token;
  const joinToken = token;
  const s = connect('/customer', { token: () => currentToken });
  socket = s;

  s.on('connect', () => setBanner(undefined));
  s.on('connect_error', (err: Error & { data?: unknown }) => {
    const refused = connectErrorOf(err);
    if (step === 'ended') {
      // After the call the server takes no new connection for the session: the rating cannot be sent any more.
      if (refused) ratingUnavailable('The connection was lost, so your rating could not be sent. Thank you all the same.');
      return;
    }
    if (!refused) {
      setBanner('Cannot reach the video service. Retrying…');
      return;
    }
    const text = CONNECT_ERRORS[refused.code] ?? { title: 'Cannot connect', message: refused.message };
    showError(refused.code, text.title, text.message);
  });
  s.on('disconnect', (reason) => {
    if (step === 'ended' || step === 'error') return;
    setBanner(reason === 'io server disconnect' ? 'The video service is restarting. Reconnecting…' : 'Connection lost. Reconnecting…');
  });

  listen(s, 'session:info', (info) => {
    if (info.resumeToken) {
      currentToken = info.resumeToken;
      sessionStorage.setItem(RESUME_KEY, JSON.stringify({ join: joinToken, resume: info.resumeToken }));
    }
    if (step !== 'connecting') return;
    switch (info.state) {
      case 'created':
        go('consent');
        break;
      case 'queued':
      case 'offered':
        // Back after a reload: the queue place is kept; the camera has to be started again.
        joinButton.textContent = 'Back to the queue';
        void startCheck();
        break;
      case 'in_call':
      case 'reconnecting':
        setText(callStatus, 'Reconnecting…');
        break;
      default:
        showError('invalid_state', 'This session is over', `This video session has ${info.state.replace('_', ' ')}.`);
    }
  });

  listen(s, 'queue:position', (pos) => {
    setText(byTestId('queue-position'), String(pos.position));
    setText(byTestId('queue-wait'), formatWait(pos.estimatedWaitS));
  });

  listen(s, 'call:start', (start) => void startCall(start.peerName));
  // A call that failed or was cut off cannot be rated (the server takes ratings of calls that ended normally).
  listen(s, 'call:ended', (ended) => endCall(END_REASONS[ended.reason], RATEABLE_ENDINGS.has(ended.reason)));
  listen(s, 'identity:guidance', ({ code }) => {
    const el = byTestId('guidance');
    el.hidden = !code;
    el.dataset.code = code ?? '';
    setText(el, code ? GUIDANCE_TEXT[code] : '');
  });
  listen(s, 'liveness:prompt', ({ challenge }) => {
    const el = byTestId('liveness-prompt');
    el.hidden = !challenge;
    el.dataset.challenge = challenge?.type ?? '';
    setText(el, challenge ? CHALLENGE_TEXT[challenge.type] : '');
  });
  listen(s, 'otp:requested', () => {
    const form = byTestId('otp');
    form.hidden = false;
    byTestId('otp-result').hidden = true;
    byTestId<HTMLInputElement>('otp-code').value = '';
    byTestId<HTMLInputElement>('otp-code').focus();
  });
  listen(s, 'protocol:error', (err) => console.warn('videoteller: protocol error', err));
}

const OTP_TEXT: Record<OtpResult['result'], string> = {
  verified: 'Thank you, the code is confirmed.',
  wrong: 'That code is not right. Please check it and try again.',
  expired: 'The code has expired. Please ask the teller for a new one.',
  locked: 'Too many wrong codes. Please ask the teller for a new one.',
  no_code: 'There is no code to confirm right now.',
};

byId<HTMLFormElement>('otp').addEventListener('submit', (e) => {
  e.preventDefault();
  void submitCode();
});

async function submitCode(): Promise<void> {
  const result = byTestId('otp-result');
  const code = byTestId<HTMLInputElement>('otp-code').value.replace(/\s+/g, '');
  if (!/^[0-9]{6}$/.test(code)) {
    setText(result, 'The code has six digits.');
    result.hidden = false;
    return;
  }
  if (!socket) return;
  try {
    const res = await request(socket, 'otp:submit', { code });
    result.dataset.result = res.result;
    setText(result, res.result === 'wrong' ? `${OTP_TEXT.wrong} (${res.attemptsLeft} tries left)` : OTP_TEXT[res.result]);
    if (res.result === 'verified') byTestId('otp').dataset.verified = 'true';
  } catch (err) {
    setText(result, `The code could not be checked: ${(err as Error).message}`);
  }
  result.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Steps

byTestId('consent').addEventListener('click', () => void startCheck());
byTestId('consent-decline').addEventListener('click', () => {
  byId('consent-declined').hidden = false;
});

async function startCheck(): Promise<void> {
  go('check');
  const status = byId('check-status');
  const error = byTestId('media-error');
  const retry = byId<HTMLButtonElement>('check-retry');
  error.hidden = true;
  retry.hidden = true;
  joinButton.disabled = true;
  setText(status, 'Starting your camera…');
  try {
    if (!(await browserSupported())) throw new MediaAccessError('unsupported', 'This browser cannot make video calls. Open the link in a current version of Chrome, Safari or Firefox.');
    localStream ??= await getLocalMedia();
  } catch (err) {
    setText(status, '');
    error.textContent = err instanceof MediaAccessError ? err.message : String(err);
    error.dataset.reason = err instanceof MediaAccessError ? err.reason : 'unknown';
    error.hidden = false;
    retry.hidden = false;
    return;
  }
  if (step !== 'check') return;
  byId<HTMLVideoElement>('check-preview').srcObject = localStream;
  stopMeter();
  stopMeter = micLevel(localStream, byId<HTMLMeterElement>('mic-level'));
  setText(status, 'Can you see yourself? Speak to check that the bar moves.');
  joinButton.disabled = false;
}
byId('check-retry').addEventListener('click', () => void startCheck());

joinButton.addEventListener('click', async () => {
  if (!socket) return;
  joinButton.disabled = true;
  try {
    const pos = await request(socket, 'queue:join', { consent: true });
    stopMeter();
    byId<HTMLVideoElement>('queue-preview').srcObject = localStream ?? null;
    setText(byTestId('queue-position'), String(pos.position));
    setText(byTestId('queue-wait'), formatWait(pos.estimatedWaitS));
    // call:start may already have arrived while the join was being acknowledged.
    if (step === 'check') go('queue');
  } catch (err) {
    joinButton.disabled = false;
    reportRequestError(err, 'Could not join the queue');
  }
});

byTestId('leave').addEventListener('click', async () => {
  if (!socket) return;
  try {
    await request(socket, 'queue:leave', {});
    sessionStorage.removeItem(RESUME_KEY);
    endCall('You left the queue.');
  } catch (err) {
    reportRequestError(err, 'Could not leave the queue');
  }
});

async function startCall(peerName: string): Promise<void> {
  if (!socket) return;
  stopMeter();
  call?.close();
  hadCall = true;
  go('call');
  setText(callStatus, `Connecting to ${peerName}…`);
  try {
    localStream ??= await getLocalMedia();
  } catch (err) {
    setText(callStatus, err instanceof Error ? err.message : String(err));
    return;
  }
  byId<HTMLVideoElement>('local-video').srcObject = localStream;
  const media = new CallMedia({
    socket,
    localStream,
    remoteVideo: byId<HTMLVideoElement>('remote-video'),
    remoteAudio: byId<HTMLAudioElement>('remote-audio'),
    onState: (state) => {
      const texts = { connecting: `Connecting to ${peerName}…`, connected: `In a call with ${peerName}`, reconnecting: 'Reconnecting…', failed: 'The connection failed.', closed: '' };
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

hangupButton.addEventListener('click', async () => {
  if (!socket) return;
  hangupButton.disabled = true;
  try {
    await request(socket, 'call:hangup', {});
    // call:ended follows; end here too in case it was missed.
    endCall(END_REASONS.customer_hangup, true);
  } catch (err) {
    // call:ended may have arrived first and closed the connection: the call is over either way.
    if (step === 'ended') return;
    hangupButton.disabled = false;
    reportRequestError(err, 'Could not hang up');
  }
});

function endCall(reason: string, offerRating = false): void {
  if (step === 'ended') return;
  if (offerRating && hadCall) {
    // The connection stays open for the rating (the server would refuse a new one for an ended session).
    stopMedia();
    byId('rating').hidden = false;
  } else {
    teardown();
  }
  setText(byId('ended-reason'), reason);
  go('ended');
}

/** Ends media and the connection: the session is over for this page. */
function teardown(): void {
  stopMedia();
  if (socket) {
    socket.off();
    socket.disconnect();
  }
}

function stopMedia(): void {
  call?.close();
  call = undefined;
  stopMeter();
  stopStream(localStream);
  localStream = undefined;
  setBanner(undefined);
}

// ---------------------------------------------------------------------------------------------
// Rating, after the call

const ratingForm = byId<HTMLFormElement>('rating');
const ratingSubmit = byTestId<HTMLButtonElement>('rating-submit');

function chosenScore(): number | undefined {
  const checked = ratingForm.querySelector<HTMLInputElement>('input[name="score"]:checked');
  return checked ? Number(checked.value) : undefined;
}

ratingForm.addEventListener('change', () => {
  ratingSubmit.disabled = chosenScore() === undefined;
});

ratingForm.addEventListener('submit', (e) => {
  e.preventDefault();
  void submitRating();
});

async function submitRating(): Promise<void> {
  const score = chosenScore();
  const error = byTestId('rating-error');
  if (score === undefined || !socket) return;
  const comment = byTestId<HTMLTextAreaElement>('rating-comment').value.trim();
  ratingSubmit.disabled = true;
  error.hidden = true;
  try {
    await request(socket, 'rating:submit', { score, ...(comment ? { comment } : {}) });
    ratingDone();
  } catch (err) {
    const code = err instanceof RequestError ? err.code : 'internal';
    // Already rated (another tab), or a call that cannot be rated: nothing the customer can fix.
    if (code === 'invalid_state') return ratingUnavailable('This call cannot be rated any more. Thank you all the same.');
    ratingSubmit.disabled = false;
    setText(error, code === 'timeout' || code === 'disconnected' ? 'Your rating could not be sent. Please try again.' : `Your rating could not be sent: ${(err as Error).message}`);
    error.hidden = false;
  }
}

function ratingDone(): void {
  ratingForm.hidden = true;
  byTestId('rating-thanks').hidden = false;
  closeSocket();
}

function ratingUnavailable(message: string): void {
  ratingForm.hidden = true;
  const thanks = byTestId('rating-thanks');
  setText(thanks, message);
  thanks.hidden = false;
  closeSocket();
}

function closeSocket(): void {
  if (!socket) return;
  socket.off();
  socket.disconnect();
}

function reportRequestError(err: unknown, what: string): void {
  const code = err instanceof RequestError ? err.code : 'internal';
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'invalid_state') {
    setBanner(`${what}: ${message}`);
    return;
  }
  if (step === 'ended' || step === 'error') return;
  setBanner(`${what}. ${code === 'timeout' || code === 'disconnected' ? 'The connection is slow or was lost; please try again.' : message}`);
}

// A new join link pasted into an open tab changes only the fragment: start over with it.
window.addEventListener('hashchange', () => location.reload());

start();
