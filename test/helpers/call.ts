import { createSession, loginStaff, type TestServer } from './server.ts';
import { next, outcome, request, type Client, type SocketClients } from './socket.ts';

/**
 * A teller in a call with a new customer, over signaling only (no media): the teller signs in and
 * becomes available, the bank's system creates the session, the customer joins the queue, the
 * teller accepts the offer. Throws, naming the step, if any step is refused.
 */
export async function callInProgress(
  clients: SocketClients,
  server: Pick<TestServer, 'url' | 'apiKey'>,
  teller: { username: string; password: string } = { username: 'alice', password: 'alice-demo-pass' },
  session?: Record<string, unknown>,
): Promise<{ teller: Client; customer: Client; sessionId: string }> {
  const tellerSocket = clients.open('/teller', await loginStaff(server.url, teller.username, teller.password));
  expectConnected(await outcome(tellerSocket), 'teller');
  expectOk(await request(tellerSocket, 'teller:availability', { status: 'available' }), 'teller:availability');
  const { customerToken, sessionId } = await createSession(server, session);
  const customer = clients.open('/customer', customerToken);
  expectConnected(await outcome(customer), 'customer');
  const offered = next(tellerSocket, 'offer:new');
  expectOk(await request(customer, 'queue:join', { consent: true }), 'queue:join');
  const offer = await offered;
  const started = next(tellerSocket, 'call:start');
  expectOk(await request(tellerSocket, 'offer:accept', { offerId: offer.offerId }), 'offer:accept');
  await started;
  return { teller: tellerSocket, customer, sessionId };
}

function expectConnected(o: Awaited<ReturnType<typeof outcome>>, who: string): void {
  if (!o.connected) throw new Error(`${who} could not connect: ${o.code} ${o.message}`);
}

function expectOk(ack: { ok: boolean }, what: string): void {
  if (!ack.ok) throw new Error(`${what} was refused: ${JSON.stringify(ack)}`);
}
