/**
 * Shared steps of the compliance tests: signed-in staff, decided calls over real signaling, and
 * fetches with a chosen credential.
 */
import { callInProgress } from '../../helpers/call.ts';
import { loginStaff, type TestServer } from '../../helpers/server.ts';
import { request, type SocketClients } from '../../helpers/socket.ts';

export const STAFF = {
  carol: ['carol', 'carol-demo-pass'],
  alice: ['alice', 'alice-demo-pass'],
  dana: ['dana', 'dana-demo-pass'],
  sam: ['sam', 'sam-demo-pass'],
} as const;

export async function token(server: Pick<TestServer, 'url'>, who: keyof typeof STAFF): Promise<string> {
  return loginStaff(server.url, STAFF[who][0], STAFF[who][1]);
}

/**
 * A real call (signaling; no media) with a new customer, decided by the teller (which ends the
 * call), or left undecided and hung up. Returns the session id.
 */
export async function decidedCall(
  clients: SocketClients,
  server: Pick<TestServer, 'url' | 'apiKey'>,
  opts: { teller?: keyof typeof STAFF; businessType?: string; customerRef?: string; decision?: 'approved' | 'rejected' | 'none'; referencePhoto?: string } = {},
): Promise<string> {
  const who = STAFF[opts.teller ?? 'alice'];
  const { teller, sessionId } = await callInProgress(clients, server, { username: who[0], password: who[1] }, {
    businessType: opts.businessType ?? 'consultation',
    language: 'en',
    priority: 0,
    customerRef: opts.customerRef ?? 'CUST-C-0001',
    ...(opts.referencePhoto ? { referencePhoto: opts.referencePhoto } : {}),
  });
  const decision = opts.decision ?? 'approved';
  if (decision !== 'none') {
    const ack = await request(teller, 'call:decide', decision === 'approved' ? { decision, reason: 'identity_verified' } : { decision, reason: 'other', note: 'test rejection' });
    if (!ack.ok) throw new Error(`decide refused: ${JSON.stringify(ack)}`);
  }
  if (decision === 'none') {
    // A decision ends the call by itself; an undecided call is hung up.
    const hung = await request(teller, 'call:hangup', {});
    if (!hung.ok) throw new Error(`hangup refused: ${JSON.stringify(hung)}`);
  }
  clients.closeAll();
  return sessionId;
}

export function get(server: Pick<TestServer, 'url'>, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${server.url}${path}`, { headers });
}

export const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
