/**
 * The supervisor board (/supervisor/): the tellers' approvals that need a second person (dual
 * control, per config/policy.yaml `decisions`), each with its evidence and the call's recording;
 * the supervisor co-signs or refuses (with a note). The server issues the verification record
 * with both decisions named.
 */
import '../lib/base.css';
import './supervisor.css';
import type { PendingDecision } from '../../signaling/protocol.ts';
import { BUSINESS_TYPE_LABELS, byId, byTestId, exposeTestHook, setText, showView } from '../lib/dom.ts';
import { connect, connectErrorOf, listen, request, RequestError, type AppSocket } from '../lib/socket.ts';
import { setupStaffLogin, type StaffLogin } from '../lib/staff-login.ts';

let socket: AppSocket | undefined;
let login: StaffLogin | undefined;
const pending = new Map<string, { decision: PendingDecision; item: HTMLElement; recordingUrl?: string }>();

const banner = byId('banner');
function setBanner(text: string | undefined): void {
  banner.hidden = !text;
  setText(banner, text ?? '');
}

exposeTestHook({
  page: 'supervisor',
  state: () => (login ? `board:${pending.size}` : 'login'),
  stats: async () => null,
});

const staffLogin = setupStaffLogin({
  storageKey: 'videoteller.supervisor',
  role: 'supervisor',
  wrongRoleMessage: 'This board is for supervisors.',
  onSignedIn: (l) => signedIn(l),
});

function signedIn(l: StaffLogin): void {
  login = l;
  setText(byId('me'), l.staff.displayName);
  byId('logout').hidden = false;
  showView('view-board');
  openSocket(l.token);
}

function signOut(message?: string): void {
  staffLogin.signOut(message);
  socket?.off();
  socket?.disconnect();
  socket = undefined;
  login = undefined;
  for (const id of [...pending.keys()]) remove(id);
  byId('logout').hidden = true;
  setText(byId('me'), '');
  setBanner(undefined);
  showView('view-login');
}
byId('logout').addEventListener('click', () => signOut());

function openSocket(token: string): void {
  const s = connect('/supervisor', { token: () => token });
  socket = s;
  s.on('connect', () => {
    setBanner(undefined);
    // The list as the server has it now (also after a reconnect: answers may have come meanwhile).
    void request(s, 'cosign:list', {})
      .then(({ pending: list }) => {
        const ids = new Set(list.map((d) => d.sessionId));
        for (const id of [...pending.keys()]) if (!ids.has(id)) remove(id);
        for (const d of list) show(d);
      })
      .catch((err) => setBanner(`Could not load the pending decisions: ${(err as Error).message}`));
  });
  s.on('connect_error', (err: Error & { data?: unknown }) => {
    const refused = connectErrorOf(err);
    if (!refused) return setBanner('Cannot reach the server. Retrying…');
    signOut(refused.code === 'token_expired' ? 'Your sign-in has expired. Please sign in again.' : refused.message);
  });
  s.on('disconnect', () => setBanner('Connection lost. Reconnecting…'));
  listen(s, 'cosign:pending', (d) => show(d));
  listen(s, 'cosign:closed', (c) => {
    const entry = pending.get(c.sessionId);
    if (!entry) return;
    const result = byTestId('cosign-result', entry.item);
    result.hidden = false;
    setText(result, `${c.verdict === 'cosign' ? 'Co-signed' : 'Refused'} by ${c.supervisorId}.`);
    // Leave the answer in view for a moment, then drop it.
    window.setTimeout(() => remove(c.sessionId), 4000);
  });
}

const template = byId<HTMLTemplateElement>('pending-item');

function show(d: PendingDecision): void {
  if (pending.has(d.sessionId)) return;
  const item = (template.content.firstElementChild as HTMLElement).cloneNode(true) as HTMLElement;
  item.dataset.sessionId = d.sessionId;
  const field = (name: string) => item.querySelector<HTMLElement>(`[data-field="${name}"]`)!;
  setText(field('businessType'), BUSINESS_TYPE_LABELS[d.businessType] ?? d.businessType);
  setText(field('customerRef'), d.customerRef);
  setText(field('amount'), d.amount ? `${d.amount.value} ${d.amount.currency}` : '');
  setText(field('teller'), d.tellerId);
  setText(field('scope'), d.tellerScope);
  setText(field('decidedAt'), new Date(d.decidedAt).toLocaleString());
  setText(field('reason'), d.reason);
  setText(field('note'), d.note ? `Teller's note: ${d.note}` : '');
  showEvidence(byTestId('pending-evidence', item), d.evidence);
  const entry: { decision: PendingDecision; item: HTMLElement; recordingUrl?: string } = { decision: d, item };
  pending.set(d.sessionId, entry);
  if (d.recordingUrl) void loadRecording(entry, d.recordingUrl);
  else byTestId('pending-no-recording', item).hidden = false;
  byTestId('cosign', item).addEventListener('click', () => void answer(d.sessionId, 'cosign'));
  byTestId('refuse', item).addEventListener('click', () => void answer(d.sessionId, 'refuse'));
  byTestId('pending-list').append(item);
  counts();
}

/** The evidence the record will carry, in words. */
function showEvidence(dl: HTMLElement, evidence: Record<string, unknown>): void {
  const ev = evidence as {
    faceMatch?: { decision: string; score: number };
    liveness?: { outcome: string; challenges?: number };
    document?: { captured: boolean };
    oneTimeCode?: { result: string };
    recording?: { durationMs: number; sha256: string };
  };
  const rows: Array<[string, string, string]> = [
    ['face', 'Face match', ev.faceMatch ? `${ev.faceMatch.decision} (score ${ev.faceMatch.score.toFixed(2)})` : 'not checked'],
    ['liveness', 'Liveness', ev.liveness ? `${ev.liveness.outcome}${ev.liveness.challenges ? ` (${ev.liveness.challenges} challenges)` : ''}` : 'not checked'],
    ['document', 'ID document', ev.document?.captured ? 'captured' : 'not captured'],
    ['otp', 'One-time code', ev.oneTimeCode?.result ?? 'not used'],
    ['recording', 'Recording', ev.recording ? `${Math.round(ev.recording.durationMs / 1000)} s, SHA-256 ${ev.recording.sha256.slice(0, 16)}…` : 'none'],
  ];
  dl.replaceChildren(
    ...rows.flatMap(([key, label, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = value;
      dd.dataset.evidence = key;
      return [dt, dd];
    }),
  );
}

/** The recording is behind the staff token, which a <video> src cannot send: fetch it, play the blob. */
async function loadRecording(entry: { item: HTMLElement; recordingUrl?: string }, url: string): Promise<void> {
  const video = byTestId<HTMLVideoElement>('pending-recording', entry.item);
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${login?.token ?? ''}` } });
    if (!res.ok) throw new Error(`${res.status}`);
    entry.recordingUrl = URL.createObjectURL(await res.blob());
    video.src = entry.recordingUrl;
    video.hidden = false;
  } catch (err) {
    const missing = byTestId('pending-no-recording', entry.item);
    setText(missing, `The recording could not be loaded (${(err as Error).message}).`);
    missing.hidden = false;
  }
}

async function answer(sessionId: string, verdict: 'cosign' | 'refuse'): Promise<void> {
  const entry = pending.get(sessionId);
  if (!entry || !socket) return;
  const result = byTestId('cosign-result', entry.item);
  const note = byTestId<HTMLTextAreaElement>('cosign-note', entry.item).value.trim();
  if (verdict === 'refuse' && !note) {
    setText(result, 'Say why you refuse in the note.');
    result.hidden = false;
    return;
  }
  const buttons = [byTestId<HTMLButtonElement>('cosign', entry.item), byTestId<HTMLButtonElement>('refuse', entry.item)];
  for (const b of buttons) b.disabled = true;
  try {
    const res = await request(socket, 'cosign:decide', { sessionId, verdict, ...(note ? { note } : {}) });
    result.dataset.decision = res.decision;
    setText(result, `${verdict === 'cosign' ? 'Co-signed' : 'Refused'}: record ${res.recordId} signed (ledger entry ${res.ledgerIndex}).`);
  } catch (err) {
    for (const b of buttons) b.disabled = false;
    setText(result, `Could not answer: ${err instanceof RequestError ? `${err.message} (${err.code})` : (err as Error).message}`);
  }
  result.hidden = false;
}

function remove(sessionId: string): void {
  const entry = pending.get(sessionId);
  if (!entry) return;
  if (entry.recordingUrl) URL.revokeObjectURL(entry.recordingUrl);
  entry.item.remove();
  pending.delete(sessionId);
  counts();
}

function counts(): void {
  setText(byTestId('pending-count'), String(pending.size));
  byTestId('pending-empty').hidden = pending.size > 0;
}

const existing = staffLogin.stored();
if (existing) signedIn(existing);
else showView('view-login');
