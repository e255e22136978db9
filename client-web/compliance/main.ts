/**
 * The compliance replay page (/compliance/): a compliance officer signs in, lists and filters the
 * sessions the ledger knows, and opens one: its recording (customer and teller views, kept in
 * sync) beside the timeline of its ledger entries (click one to seek), the face-match chart, the
 * liveness challenges, the decision and its signatures, and a verification panel.
 *
 * The verification runs HERE, with the same code as `videoteller verify-bundle`
 * (src/ledger/bundle.ts over src/ledger/verify.ts): each entry's own bytes, as the server read
 * them from storage, hashed and led through its inclusion proof to the signed checkpoint; the
 * checkpoint's and the record's signatures; the recording's and photos' SHA-256. Nothing the
 * server says about validity is trusted: it sends bytes and proofs, the page checks them.
 */
import '../lib/base.css';
import './compliance.css';
import { z } from 'zod';
import { BUSINESS_TYPES, protocolErrorSchema } from '../../signaling/protocol.ts';
import { checkBlobs, sessionEvidenceSchema, verifySessionEvidence, webCryptoDigest, type BlobRef, type EntryCheck, type EvidenceReport, type SessionEvidence } from '../../src/ledger/bundle.ts';
import { fromBase64 } from '../../src/ledger/bytes.ts';
import { BUSINESS_TYPE_LABELS, byId, byTestId, formatDuration, setText, showView } from '../lib/dom.ts';
import { setupStaffLogin, type StaffLogin } from '../lib/staff-login.ts';
import { drawScoreChartFrame } from '../lib/score-chart.ts';

const SESSION_KEY = 'videoteller.compliance';
const PAGE_SIZE = 20;
/** Recordings larger than this are not hashed in the browser (use the CLI on the bundle). */
const MAX_HASH_BYTES = 512 * 1024 * 1024;
/** The similarity curve of the teller console (src/identity/scoring.ts defaults). */
const DEFAULT_THRESHOLD = 0.45;
const SIMILARITY_SCALE = 0.05;

type Login = StaffLogin;

const recordingSchema = z.object({
  sha256: z.string(),
  bytes: z.number().nullable(),
  durationMs: z.number().nullable(),
  startedAt: z.number().nullable(),
  mimeType: z.string(),
  tracks: z.array(z.object({ participant: z.string(), kind: z.string(), codec: z.string(), startMs: z.number() })),
  entryIndex: z.number(),
});

const summarySchema = z.object({
  sessionId: z.string(),
  createdAt: z.string(),
  businessType: z.string().nullable(),
  language: z.string().nullable(),
  customerRef: z.string().nullable(),
  tellers: z.array(z.string()),
  state: z.string().nullable(),
  decision: z.enum(['approved', 'rejected']).nullable(),
  decisionReason: z.string().nullable(),
  decidedBy: z.string().nullable(),
  decidedAt: z.string().nullable(),
  record: z.object({ index: z.number(), jti: z.string().nullable(), kid: z.string().nullable() }).nullable(),
  recordings: z.array(recordingSchema),
  recordingFailures: z.array(z.object({ code: z.string(), entryIndex: z.number() })),
  entries: z.number(),
});
type Summary = z.infer<typeof summarySchema>;

const listSchema = z.object({ total: z.number(), offset: z.number(), limit: z.number(), sessions: z.array(summarySchema) });
const detailSchema = z.object({ session: summarySchema, evidence: sessionEvidenceSchema, notes: z.array(z.string()) });

interface TimelineEntry {
  index: number;
  time: string;
  ms: number;
  type: string;
  actor: string;
  payload: Record<string, unknown>;
}

let login: Login | undefined;
let listOffset = 0;
let current: { summary: Summary; evidence: SessionEvidence; entries: (TimelineEntry | null)[]; report?: EvidenceReport; t0: number | null } | undefined;

/** For the end-to-end test: the last verification report (read-only). */
(window as unknown as { __compliance: { report(): EvidenceReport | undefined } }).__compliance = { report: () => current?.report };

// ---------------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function api<T>(path: string, schema: z.ZodType<T>, init: RequestInit = {}): Promise<T> {
  if (!login) throw new ApiError(401, 'unauthorized', 'Please sign in.');
  const res = await fetch(path, { ...init, headers: { ...(init.headers ?? {}), authorization: `Bearer ${login.token}` } });
  const body: unknown = res.status === 204 ? null : await res.json().catch(() => undefined);
  if (!res.ok) {
    const err = z.object({ error: protocolErrorSchema }).safeParse(body);
    if (res.status === 401) signOut('Your sign-in has expired. Please sign in again.');
    throw new ApiError(res.status, err.success ? err.data.error.code : String(res.status), err.success ? err.data.error.message : `Request failed (${res.status}).`);
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new ApiError(500, 'bad_response', 'The server sent an unexpected answer.');
  return parsed.data;
}

// ---------------------------------------------------------------------------------------------
// Sign-in

const staffLogin = setupStaffLogin({
  storageKey: SESSION_KEY,
  role: 'compliance',
  wrongRoleMessage: 'This page is for compliance officers; your account cannot open it.',
  onSignedIn: (l) => void signedIn(l).catch((err) => signOut(`Sign-in failed: ${(err as Error).message}`)),
});

async function signedIn(l: Login): Promise<void> {
  login = l;
  // The <video> elements cannot send the Authorization header: the server puts the same token in
  // an HttpOnly cookie scoped to the media routes.
  await api('/api/compliance/media-cookie', z.null(), { method: 'POST' });
  setText(byId('me'), l.staff.displayName);
  byId('logout').hidden = false;
  await route();
}

function signOut(message?: string): void {
  if (login) void fetch('/api/compliance/media-cookie', { method: 'DELETE', headers: { authorization: `Bearer ${login.token}` } }).catch(() => {});
  staffLogin.signOut(message);
  login = undefined;
  current = undefined;
  stopVideos();
  byId('logout').hidden = true;
  setText(byId('me'), '');
  showView('view-login');
}
byId('logout').addEventListener('click', () => signOut());

// ---------------------------------------------------------------------------------------------
// Routing: #/ is the list, #/session/<id> a session.

async function route(): Promise<void> {
  if (!login) return;
  const m = /^#\/session\/([A-Za-z0-9._:-]{1,128})$/.exec(location.hash);
  if (m) await openSession(m[1]!);
  else await showList();
}
window.addEventListener('hashchange', () => void route());

// ---------------------------------------------------------------------------------------------
// The list

const businessSelect = byTestId<HTMLSelectElement>('filter-business-type');
for (const b of BUSINESS_TYPES) {
  const o = document.createElement('option');
  o.value = b;
  o.textContent = BUSINESS_TYPE_LABELS[b] ?? b;
  businessSelect.append(o);
}

function filterQuery(): URLSearchParams {
  const q = new URLSearchParams();
  const from = byTestId<HTMLInputElement>('filter-from').value;
  const to = byTestId<HTMLInputElement>('filter-to').value;
  const teller = byTestId<HTMLInputElement>('filter-teller').value.trim();
  const decision = byTestId<HTMLSelectElement>('filter-decision').value;
  if (from) q.set('from', from);
  if (to) q.set('to', to);
  if (teller) q.set('teller', teller);
  if (decision) q.set('decision', decision);
  if (businessSelect.value) q.set('businessType', businessSelect.value);
  q.set('offset', String(listOffset));
  q.set('limit', String(PAGE_SIZE));
  return q;
}

byId<HTMLFormElement>('filters').addEventListener('submit', (e) => {
  e.preventDefault();
  listOffset = 0;
  void loadList();
});
byId('prev').addEventListener('click', () => {
  listOffset = Math.max(0, listOffset - PAGE_SIZE);
  void loadList();
});
byId('next').addEventListener('click', () => {
  listOffset += PAGE_SIZE;
  void loadList();
});

async function showList(): Promise<void> {
  stopVideos();
  current = undefined;
  showView('view-list');
  await loadList();
}

async function loadList(): Promise<void> {
  const error = byTestId('list-error');
  error.hidden = true;
  const tbody = byId('sessions-body');
  try {
    const data = await api(`/api/compliance/sessions?${filterQuery()}`, listSchema);
    tbody.replaceChildren(
      ...data.sessions.map((s) => {
        const tr = document.createElement('tr');
        tr.setAttribute('data-testid', 'session-row');
        tr.dataset.sessionId = s.sessionId;
        tr.tabIndex = 0;
        const cells = [
          new Date(s.createdAt).toLocaleString(),
          BUSINESS_TYPE_LABELS[s.businessType ?? ''] ?? s.businessType ?? '–',
          s.customerRef ?? '–',
          s.tellers.join(', ') || '–',
          s.decision ?? 'not decided',
          s.recordings.length ? formatDuration(s.recordings.at(-1)!.durationMs ?? 0) : s.recordingFailures.length ? 'failed' : '–',
          String(s.entries),
        ];
        for (const c of cells) {
          const td = document.createElement('td');
          td.textContent = c;
          tr.append(td);
        }
        tr.children[4]!.setAttribute('data-decision', s.decision ?? 'none');
        const open = () => {
          location.hash = `#/session/${s.sessionId}`;
        };
        tr.addEventListener('click', open);
        tr.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter') open();
        });
        return tr;
      }),
    );
    setText(byId('page-info'), data.total === 0 ? 'No sessions' : `${data.offset + 1}–${data.offset + data.sessions.length} of ${data.total}`);
    byId<HTMLButtonElement>('prev').disabled = data.offset === 0;
    byId<HTMLButtonElement>('next').disabled = data.offset + data.sessions.length >= data.total;
  } catch (err) {
    error.textContent = (err as Error).message;
    error.hidden = false;
  }
}

// ---------------------------------------------------------------------------------------------
// A session

byId('back').addEventListener('click', () => {
  location.hash = '#/';
});

function decodeEntry(bytes: string | null): TimelineEntry | null {
  if (bytes === null) return null;
  try {
    const e = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(fromBase64(bytes))) as Record<string, unknown>;
    return {
      index: Number(e.index),
      time: String(e.time),
      ms: Date.parse(String(e.time)),
      type: String(e.type),
      actor: String(e.actor),
      payload: (e.payload ?? {}) as Record<string, unknown>,
    };
  } catch {
    return null;
  }
}

async function openSession(id: string): Promise<void> {
  showView('view-session');
  const error = byTestId('session-error');
  error.hidden = true;
  setText(byId('session-title'), `Session ${id}`);
  byTestId('verify-result').dataset.state = 'running';
  setText(byTestId('verify-result'), 'Checking…');
  try {
    const data = await api(`/api/compliance/sessions/${encodeURIComponent(id)}`, detailSchema);
    const entries = data.evidence.entries.map((e) => decodeEntry(e.bytes));
    const rec = data.session.recordings.at(-1);
    current = { summary: data.session, evidence: data.evidence, entries, t0: rec?.startedAt ?? null };
    renderHeader(data.session, data.notes);
    setUpVideos(data.session);
    renderTimeline();
    renderChart();
    renderLiveness();
    renderDecision();
    await verify();
  } catch (err) {
    error.textContent = (err as Error).message;
    error.hidden = false;
    byTestId('verify-result').dataset.state = 'error';
    setText(byTestId('verify-result'), 'Could not load the session.');
  }
}

function renderHeader(s: Summary, notes: string[]): void {
  const bt = BUSINESS_TYPE_LABELS[s.businessType ?? ''] ?? s.businessType ?? '';
  setText(byId('session-title'), `${bt} · ${s.customerRef ?? ''} · ${new Date(s.createdAt).toLocaleString()}`);
  const error = byTestId('session-error');
  if (notes.length) {
    error.textContent = notes.join(' ');
    error.hidden = false;
  }
}

// ---- videos ------------------------------------------------------------------------------------

const vCustomer = byTestId<HTMLVideoElement>('video-customer');
const vTeller = byTestId<HTMLVideoElement>('video-teller');
const playButton = byTestId<HTMLButtonElement>('play');
let syncTimer: number | undefined;

function stopVideos(): void {
  for (const v of [vCustomer, vTeller]) {
    v.pause();
    v.removeAttribute('src');
    v.load();
  }
  if (syncTimer !== undefined) window.clearInterval(syncTimer);
  syncTimer = undefined;
}

/** The player that leads: the customer's if present, else the teller's. */
function leader(): HTMLVideoElement {
  return vCustomer.hasAttribute('src') ? vCustomer : vTeller;
}
function follower(): HTMLVideoElement | undefined {
  return vCustomer.hasAttribute('src') && vTeller.hasAttribute('src') ? vTeller : undefined;
}

function setUpVideos(s: Summary): void {
  stopVideos();
  const rec = s.recordings.at(-1);
  const info = byTestId('recording-info');
  playButton.disabled = !rec;
  if (!rec) {
    setText(info, s.recordingFailures.length ? `No recording: it failed (${s.recordingFailures.at(-1)!.code}).` : 'No recording for this session.');
    return;
  }
  setText(info, `${rec.mimeType}, ${((rec.bytes ?? 0) / 1e6).toFixed(1)} MB, SHA-256 ${rec.sha256.slice(0, 12)}…`);
  const base = `/api/compliance/sessions/${encodeURIComponent(s.sessionId)}/recording?sha256=${rec.sha256}`;
  const has = (p: string) => rec.tracks.some((t) => t.participant === p);
  if (has('customer')) vCustomer.src = `${base}&participant=customer`;
  if (has('teller')) vTeller.src = `${base}&participant=teller`;
  syncTimer = window.setInterval(tick, 250);
}

function tick(): void {
  const lead = leader();
  const f = follower();
  // Keep the second player within a quarter of a second of the first.
  if (f && !lead.seeking && !f.seeking && Math.abs(f.currentTime - lead.currentTime) > 0.25 && f.readyState >= 1) f.currentTime = lead.currentTime;
  const total = Number.isFinite(lead.duration) ? lead.duration : 0;
  setText(byTestId('clock'), `${formatDuration(lead.currentTime * 1000)} / ${formatDuration(total * 1000)}`);
  setText(playButton, lead.paused ? 'Play' : 'Pause');
  highlightTimeline(lead.currentTime);
}

playButton.addEventListener('click', () => {
  const lead = leader();
  if (lead.paused) {
    void lead.play().catch(() => {});
    void follower()?.play().catch(() => {});
  } else {
    lead.pause();
    follower()?.pause();
  }
});
for (const v of [vCustomer, vTeller]) {
  v.addEventListener('pause', () => {
    if (v === leader()) follower()?.pause();
  });
  v.addEventListener('seeked', () => {
    const f = follower();
    if (v === leader() && f && Math.abs(f.currentTime - v.currentTime) > 0.05) f.currentTime = v.currentTime;
  });
  v.addEventListener('ratechange', () => {
    const f = follower();
    if (v === leader() && f) f.playbackRate = v.playbackRate;
  });
}

/** Seeks both players to the recording time of an epoch-ms moment. */
function seekTo(ms: number): void {
  if (!current || current.t0 === null) return;
  const t = Math.max(0, (ms - current.t0) / 1000);
  leader().currentTime = t;
  const f = follower();
  if (f) f.currentTime = t;
}

// ---- timeline ----------------------------------------------------------------------------------

const TYPE_LABELS: Record<string, string> = {
  'session.created': 'Session created',
  'session.transition': 'State',
  'customer.consent': 'Customer consent',
  'offer.closed': 'Offer',
  'call.started': 'Call started',
  'call.ended': 'Call ended',
  'media.producer': 'Media',
  'identity.reference_photo': 'ID photo registered',
  'identity.match_summary': 'Face match',
  'identity.liveness_challenge': 'Liveness challenge',
  'identity.liveness_result': 'Liveness result',
  'identity.document_capture': 'ID document captured',
  'identity.decision_snapshot': 'Identity at decision',
  'decision.made': 'Decision',
  'decision.cosigned': 'Co-signed by a supervisor',
  'decision.cosign_refused': 'Co-signature refused',
  'record.issued': 'Record issued',
  'recording.stored': 'Recording stored',
  'recording.failed': 'Recording failed',
};

function describe(e: TimelineEntry): string {
  const p = e.payload;
  switch (e.type) {
    case 'session.transition':
      return `${String(p.from)} → ${String(p.to)} (${String(p.reason ?? '')})`;
    case 'identity.match_summary':
      return `${String(p.decision)}, median distance ${String(p.medianDistance ?? '–')}`;
    case 'identity.liveness_challenge':
      return `${String(p.type)}: ${String(p.status)}`;
    case 'identity.liveness_result':
      return String(p.status);
    case 'decision.made':
      return `${String(p.decision)} (${String(p.reason ?? '')})${p.dualControl ? ', needs a co-signature' : ''}`;
    case 'decision.cosigned':
    case 'decision.cosign_refused':
      return `${String(p.verdict)} of ${String(p.tellerId)}'s approval`;
    case 'record.issued':
      return `${String((p.record as Record<string, unknown> | undefined)?.decision ?? '')}, key ${String(p.kid ?? '').slice(0, 10)}…`;
    case 'recording.stored':
      return `${Math.round(Number(p.durationMs ?? 0) / 1000)} s, ${String(p.sha256 ?? '').slice(0, 12)}…`;
    default:
      return '';
  }
}

function renderTimeline(): void {
  if (!current) return;
  const ol = byId('timeline');
  ol.replaceChildren(
    ...current.evidence.entries.map((ev, k) => {
      const e = current!.entries[k]!;
      const li = document.createElement('li');
      li.setAttribute('data-testid', 'timeline-entry');
      li.dataset.index = String(ev.index);
      li.dataset.verified = 'pending';
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'entry';
      const mark = document.createElement('span');
      mark.className = 'mark';
      mark.setAttribute('data-testid', 'entry-mark');
      const when = document.createElement('span');
      when.className = 'when';
      const what = document.createElement('span');
      what.className = 'what';
      if (e) {
        li.dataset.type = e.type;
        const offset = current!.t0 === null ? null : (e.ms - current!.t0) / 1000;
        if (offset !== null) li.dataset.offset = offset.toFixed(3);
        when.textContent = offset === null ? new Date(e.ms).toLocaleTimeString() : offset < 0 ? `−${formatDuration(-offset * 1000)}` : formatDuration(offset * 1000);
        what.textContent = `#${ev.index} ${TYPE_LABELS[e.type] ?? e.type} ${describe(e)} · ${e.actor}`;
        button.addEventListener('click', () => seekTo(e.ms));
      } else {
        when.textContent = '?';
        what.textContent = `#${ev.index} unreadable: ${ev.unreadable ?? 'the bytes do not decode'}`;
      }
      button.append(mark, when, what);
      li.append(button);
      return li;
    }),
  );
}

function highlightTimeline(t: number): void {
  if (!current || current.t0 === null) return;
  let last: HTMLElement | undefined;
  for (const li of byId('timeline').children as HTMLCollectionOf<HTMLElement>) {
    const off = Number(li.dataset.offset);
    li.classList.remove('now');
    if (Number.isFinite(off) && off <= t) last = li;
  }
  last?.classList.add('now');
}

// ---- chart -------------------------------------------------------------------------------------

function renderChart(): void {
  if (!current) return;
  const canvas = byTestId<HTMLCanvasElement>('score-chart');
  const ctx = canvas.getContext('2d');
  const threshold = recordThreshold() ?? DEFAULT_THRESHOLD;
  const points = current.entries
    .filter((e): e is TimelineEntry => e !== null && e.type === 'identity.match_summary' && typeof e.payload.medianDistance === 'number')
    .map((e) => ({ ms: Number(e.payload.second) * 1000 || e.ms, s: 1 / (1 + Math.exp((Number(e.payload.medianDistance) - threshold) / SIMILARITY_SCALE)), index: e.index }));
  canvas.dataset.points = String(points.length);
  setText(
    byTestId('chart-note'),
    points.length
      ? `Similarity per second from the median face distance in each match summary (threshold ${threshold}, dashed at 50%). Click to seek.`
      : 'No face-match summaries in this session.',
  );
  if (!ctx) return;
  const { w, h } = drawScoreChartFrame(ctx, canvas);
  if (points.length === 0) return;
  const start = current.t0 ?? points[0]!.ms;
  const end = Math.max(start + 10_000, ...points.map((p) => p.ms), current.t0 !== null ? start + (current.summary.recordings.at(-1)?.durationMs ?? 0) : 0);
  const x = (ms: number) => ((ms - start) / (end - start)) * (w - 8) + 4;
  const y = (s: number) => h - 4 - s * (h - 8);
  ctx.strokeStyle = '#1a73e8';
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.ms), y(p.s)) : ctx.lineTo(x(p.ms), y(p.s))));
  ctx.stroke();
  for (const p of points) {
    const ok = current.report?.entries.find((e) => e.index === p.index)?.ok;
    ctx.fillStyle = ok === false ? '#d93025' : '#1a73e8';
    ctx.beginPath();
    ctx.arc(x(p.ms), y(p.s), 3, 0, Math.PI * 2);
    ctx.fill();
  }
  canvas.onclick = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const ms = start + ((ev.clientX - rect.left) / rect.width) * (end - start);
    seekTo(ms);
  };
}

function recordThreshold(): number | undefined {
  const claims = current?.report?.record?.claims as { evidence?: { faceMatch?: { threshold?: number } } } | undefined;
  return claims?.evidence?.faceMatch?.threshold;
}

// ---- liveness ----------------------------------------------------------------------------------

function renderLiveness(): void {
  if (!current) return;
  const list = byId('liveness');
  const challenges = current.entries.filter((e): e is TimelineEntry => e?.type === 'identity.liveness_challenge');
  list.replaceChildren(
    ...challenges.map((c) => {
      const li = document.createElement('li');
      li.dataset.status = String(c.payload.status);
      li.dataset.type = String(c.payload.type);
      const after = typeof c.payload.passedAfterMs === 'number' ? ` after ${(c.payload.passedAfterMs / 1000).toFixed(1)} s` : '';
      li.textContent = `${String(c.payload.type).replace('_', ' ')}: ${String(c.payload.status)}${after} (${String(c.payload.reason ?? '')})`;
      if (current?.report?.entries.find((x) => x.index === c.index)?.ok === false) {
        li.dataset.verified = 'failed';
        li.textContent += ` — entry #${c.index} NOT in the signed log`;
      }
      li.addEventListener('click', () => seekTo(typeof c.payload.issuedAt === 'number' ? c.payload.issuedAt : c.ms));
      return li;
    }),
  );
  const result = current.entries.filter((e): e is TimelineEntry => e?.type === 'identity.liveness_result').at(-1);
  const el = byTestId('liveness-result');
  el.dataset.status = result ? String(result.payload.status) : 'none';
  setText(el, result ? `${String(result.payload.status)} (${String(result.payload.passed)} passed, ${String(result.payload.failed)} failed)` : 'no liveness check in this session');
}

// ---- decision and signatures -------------------------------------------------------------------

function fact(dl: HTMLElement, term: string, value: string, testid?: string, fromIndex?: number): void {
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  dd.textContent = value;
  if (testid) dd.setAttribute('data-testid', testid);
  // What an entry says counts only once the entry is verified: say so next to it.
  const check = fromIndex === undefined ? undefined : current?.report?.entries.find((e) => e.index === fromIndex);
  if (check && !check.ok) {
    dd.dataset.state = 'failed';
    dd.append(document.createElement('br'), `NOT in the signed log (entry #${fromIndex} was changed): do not rely on it`);
  }
  dl.append(dt, dd);
}

function renderDecision(): void {
  if (!current) return;
  const dl = byId('decision');
  dl.replaceChildren();
  const decisions = current.entries.filter((e): e is TimelineEntry => e !== null && e.type.startsWith('decision.'));
  if (decisions.length === 0) fact(dl, 'Decision', 'not decided', 'decision-value');
  for (const d of decisions) {
    if (d.type === 'decision.made') fact(dl, 'Decision', `${String(d.payload.decision)} (${String(d.payload.reason ?? '')}) by ${d.actor}, ${new Date(d.ms).toLocaleString()}`, 'decision-value', d.index);
    else fact(dl, 'Supervisor', `${String(d.payload.verdict)} by ${d.actor}, ${new Date(d.ms).toLocaleString()}`, 'cosign-value', d.index);
    if (typeof d.payload.note === 'string') fact(dl, 'Note', d.payload.note, undefined, d.index);
  }
  const r = current.report?.record;
  if (r?.ok && r.claims) {
    const c = r.claims as Record<string, unknown>;
    fact(dl, 'Record', `${String(c.jti)}, ${String(c.decision)} by ${String(c.tellerId)}${c.tellerScope ? ` (${String(c.tellerScope)})` : ''}`, 'record-value');
    if (c.supervisorId) fact(dl, 'Supervisor', String(c.supervisorId));
    const approvals = c.approvals as { role: string; staffId: string; decision: string; at: number }[] | undefined;
    if (Array.isArray(approvals)) for (const a of approvals) fact(dl, `Approval (${a.role})`, `${a.staffId}: ${a.decision}, ${new Date(a.at).toLocaleString()}`);
    fact(dl, 'Record signed by', `EdDSA key ${String(r.kid)}`);
    fact(dl, 'Valid', `${new Date(Number(c.iat) * 1000).toLocaleString()} – ${new Date(Number(c.exp) * 1000).toLocaleString()}`);
  } else if (current.evidence.record === null) {
    fact(dl, 'Record', current.summary.record ? 'issued (see the record.issued entry); the signed JWS is no longer held by the server' : 'none', 'record-value');
  }
  const cp = current.report?.checkpoint;
  if (cp?.ok) fact(dl, 'Checkpoint', `${current.evidence.origin}, size ${cp.size}, signed by ${cp.signedBy.join(', ')}`);
}

// ---- verification ------------------------------------------------------------------------------

async function verify(): Promise<void> {
  if (!current) return;
  const state = current;
  const report = await verifySessionEvidence(state.evidence);
  state.report = report;
  renderDecision();
  renderLiveness();
  showEntryResults(report.entries);
  renderChart();
  const blobs = byId('verify-blobs');
  blobs.replaceChildren();
  setText(byTestId('verify-summary'), `${report.entries.filter((e) => e.ok).length} of ${report.entries.length} entries verified in the log.`);
  const cp = report.checkpoint;
  const cpEl = byTestId('verify-checkpoint');
  cpEl.dataset.state = cp.ok ? 'ok' : 'failed';
  setText(cpEl, cp.ok ? `Checkpoint of size ${cp.size} signed by ${cp.signedBy.join(', ')} (keys published by this server).` : `Checkpoint: ${cp.problem?.message ?? 'not verified'}`);
  const recEl = byTestId('verify-record');
  recEl.dataset.state = report.record === null ? 'none' : report.record.ok ? 'ok' : 'failed';
  setText(
    recEl,
    report.record === null
      ? 'No signed record to check.'
      : report.record.ok
        ? `Record ${report.record.jti}: signature holds (key ${report.record.kid}); its entry #${report.record.index} is in the log.`
        : `Record: ${report.record.problem?.message ?? 'does not verify'}`,
  );

  // Blobs: fetched and hashed here (the recording unless it is very large).
  const sessionPath = `/api/compliance/sessions/${encodeURIComponent(state.summary.sessionId)}`;
  const skipped: BlobRef[] = [];
  await checkBlobs(
    report,
    state.evidence.blobs,
    async (ref) => {
      if (ref.bytes !== null && ref.bytes > MAX_HASH_BYTES) {
        skipped.push(ref);
        return undefined;
      }
      const res = await fetch(ref.kind === 'recording' ? `${sessionPath}/recording?sha256=${ref.sha256}` : `${sessionPath}/blobs/${ref.sha256}`, {
        headers: { authorization: `Bearer ${login?.token ?? ''}` },
      });
      return res.ok ? new Uint8Array(await res.arrayBuffer()) : undefined;
    },
    webCryptoDigest,
  );
  if (current !== state) return;
  blobs.replaceChildren(
    ...report.blobs.map((b) => {
      const li = document.createElement('li');
      li.setAttribute('data-testid', `verify-blob-${b.kind}`);
      li.dataset.state = b.ok ? 'ok' : skipped.some((s) => s.sha256 === b.sha256) ? 'skipped' : 'failed';
      li.textContent = b.ok
        ? `✓ ${b.kind.replace('_', ' ')} ${b.sha256.slice(0, 12)}… matches entry #${b.entryIndex} (${b.bytes} bytes)`
        : `✗ ${b.kind.replace('_', ' ')}: ${b.problem?.message ?? ''}`;
      return li;
    }),
  );
  byId('verify-problems').replaceChildren(
    ...report.problems.slice(0, 50).map((p) => {
      const li = document.createElement('li');
      li.textContent = `${p.kind}${p.index !== undefined ? ` #${p.index}` : ''}: ${p.message}`;
      return li;
    }),
  );
  const result = byTestId('verify-result');
  result.dataset.state = report.ok ? 'ok' : 'failed';
  setText(result, report.ok ? 'Every entry, the checkpoint, the record and the files verify.' : `FAILED: ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'}.`);
}

function showEntryResults(checks: EntryCheck[]): void {
  const byIndex = new Map(checks.map((c) => [c.index, c]));
  for (const li of byId('timeline').children as HTMLCollectionOf<HTMLElement>) {
    const c = byIndex.get(Number(li.dataset.index));
    li.dataset.verified = c?.ok ? 'ok' : 'failed';
    const mark = li.querySelector<HTMLElement>('.mark');
    if (mark) mark.textContent = c?.ok ? '✓' : '✗';
    li.title = c?.ok ? 'In the signed log' : (c?.problem?.message ?? 'not verified');
  }
}

// ---- bundle download ---------------------------------------------------------------------------

byId('download').addEventListener('click', async () => {
  if (!current || !login) return;
  const id = current.summary.sessionId;
  const res = await fetch(`/api/compliance/sessions/${encodeURIComponent(id)}/bundle`, { headers: { authorization: `Bearer ${login.token}` } });
  if (!res.ok) {
    const error = byTestId('session-error');
    error.textContent = `Could not download the bundle (${res.status}).`;
    error.hidden = false;
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = `videoteller-session-${id}.tar`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
});

// ---------------------------------------------------------------------------------------------

const existing = staffLogin.stored();
if (existing) void signedIn(existing).catch(() => signOut());
else showView('view-login');
