/**
 * The supervisor board (/supervisor/):
 * - the floor, live: queues by business type and language (length, longest wait), tellers (state,
 *   time in the current call, satisfaction), service level, abandonment, connection rate and
 *   overall satisfaction, from the server's `board:update` snapshots (on connect and on changes);
 * - the tellers' approvals that need a second person (dual control, per config/policy.yaml
 *   `decisions`), each with its evidence and the call's recording; the supervisor co-signs or
 *   refuses (with a note). The server issues the verification record with both decisions named.
 */
import '../lib/base.css';
import './supervisor.css';
import type { BoardSnapshot, PendingDecision } from '../../signaling/protocol.ts';
import { BUSINESS_TYPE_LABELS, byId, byTestId, exposeTestHook, formatDuration, languageLabel, setText, showView } from '../lib/dom.ts';
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
  clearBoard();
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
  listen(s, 'board:update', (b) => showBoard(b));
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

// ---------------------------------------------------------------------------------------------
// The floor

/** The last snapshot and when it arrived (performance.now()): durations tick on from there between pushes. */
let board: { snapshot: BoardSnapshot; receivedAt: number } | undefined;
let ticker: number | undefined;

const TELLER_STATE_LABELS: Record<string, string> = {
  offline: 'Offline',
  available: 'Available',
  reserved: 'Being offered a call',
  busy: 'In a call',
  wrap_up: 'Wrap-up',
  away: 'Away',
};

function percent(x: number | null | undefined): string {
  return x === null || x === undefined ? 'n/a' : `${Math.round(x * 100)} %`;
}

function satisfactionText(s: { count: number; average: number | null }): string {
  return s.average === null ? 'no ratings yet' : `${s.average.toFixed(1)} / 5 (${s.count} ${s.count === 1 ? 'rating' : 'ratings'})`;
}

function cell(text: string, field: string, numeric = false): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  td.dataset.field = field;
  if (numeric) td.className = 'num';
  return td;
}

function showBoard(snapshot: BoardSnapshot): void {
  board = { snapshot, receivedAt: performance.now() };
  const stats = snapshot.callStats;
  setText(byTestId('board-service-level'), percent(stats?.serviceLevel));
  setText(byTestId('board-abandonment'), percent(stats?.abandonmentRate));
  setText(byTestId('board-connection-rate'), percent(stats?.connectionRate));
  setText(byTestId('board-answered'), stats ? String(stats.answered) : 'n/a');
  byTestId('board-stats-note').hidden = stats !== null;
  setText(byTestId('board-satisfaction'), satisfactionText(snapshot.satisfaction));
  byTestId('board-satisfaction').dataset.average = snapshot.satisfaction.average === null ? '' : String(snapshot.satisfaction.average);

  const queues = byTestId<HTMLTableElement>('queues');
  queues.tBodies[0]!.replaceChildren(
    ...snapshot.queues.map((q) => {
      const tr = document.createElement('tr');
      tr.dataset.testid = 'queue-row';
      tr.dataset.businessType = q.businessType;
      tr.dataset.language = q.language;
      tr.append(
        cell(BUSINESS_TYPE_LABELS[q.businessType] ?? q.businessType, 'businessType'),
        cell(languageLabel(q.language), 'language'),
        cell(String(q.length), 'length', true),
        cell(String(q.offered), 'offered', true),
        cell('', 'oldestWait', true),
      );
      return tr;
    }),
  );
  queues.hidden = snapshot.queues.length === 0;
  byTestId('queues-empty').hidden = snapshot.queues.length > 0;

  const tellers = byTestId<HTMLTableElement>('tellers');
  tellers.tBodies[0]!.replaceChildren(
    ...snapshot.tellers.map((t) => {
      const tr = document.createElement('tr');
      tr.dataset.testid = 'teller-row';
      tr.dataset.tellerId = t.tellerId;
      tr.dataset.state = t.state;
      const state = document.createElement('td');
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.state = t.state;
      badge.textContent = TELLER_STATE_LABELS[t.state] ?? t.state;
      state.append(badge);
      state.dataset.field = 'state';
      const satisfaction = cell(satisfactionText(t.satisfaction), 'satisfaction');
      satisfaction.dataset.average = t.satisfaction.average === null ? '' : String(t.satisfaction.average);
      satisfaction.dataset.count = String(t.satisfaction.count);
      tr.append(cell(t.displayName, 'name'), state, cell('', 'callDuration', true), satisfaction);
      return tr;
    }),
  );
  tellers.hidden = snapshot.tellers.length === 0;
  byTestId('tellers-empty').hidden = snapshot.tellers.length > 0;
  tick();
  ticker ??= window.setInterval(tick, 1000);
}

/** Waits and call durations move on every second between snapshots. */
function tick(): void {
  if (!board) return;
  const elapsedS = Math.floor((performance.now() - board.receivedAt) / 1000);
  const { snapshot } = board;
  const rows = byTestId<HTMLTableElement>('queues').tBodies[0]!.rows;
  snapshot.queues.forEach((q, i) => {
    const td = rows[i]?.querySelector<HTMLElement>('[data-field="oldestWait"]');
    if (td) setText(td, formatDuration((q.oldestWaitS + elapsedS) * 1000));
  });
  const tellerRows = byTestId<HTMLTableElement>('tellers').tBodies[0]!.rows;
  snapshot.tellers.forEach((t, i) => {
    const td = tellerRows[i]?.querySelector<HTMLElement>('[data-field="callDuration"]');
    if (td) setText(td, t.callDurationS === null ? '–' : formatDuration((t.callDurationS + elapsedS) * 1000));
  });
  setText(byTestId('board-updated'), `updated ${new Date(snapshot.at).toLocaleTimeString()}`);
}

function clearBoard(): void {
  board = undefined;
  if (ticker !== undefined) window.clearInterval(ticker);
  ticker = undefined;
  for (const id of ['queues', 'tellers']) {
    const table = byTestId<HTMLTableElement>(id);
    table.tBodies[0]!.replaceChildren();
    table.hidden = true;
  }
  byTestId('queues-empty').hidden = false;
  byTestId('tellers-empty').hidden = false;
  setText(byTestId('board-updated'), '');
}

const existing = staffLogin.stored();
if (existing) signedIn(existing);
else showView('view-login');
