import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiKeys } from '../auth/api-keys.ts';
import type { StaffDirectory, StaffRole } from '../auth/staff-directory.ts';
import type { StaffIdentity, StaffTokens } from '../auth/staff-tokens.ts';
import { HttpError, parseInput } from './errors.ts';

export const loginBodySchema = z.object({ username: z.string().min(1).max(64), password: z.string().min(1).max(256) }).strict();

/** POST /api/auth/login: staff sign in and get a JWT with their role and skills. */
export async function authRoutes(app: FastifyInstance, opts: { directory: StaffDirectory; staffTokens: StaffTokens }): Promise<void> {
  app.post('/api/auth/login', async (req, reply) => {
    const { username, password } = parseInput(loginBodySchema, req.body, 'body');
    const staff = await opts.directory.authenticate(username, password);
    if (!staff) {
      req.log.warn({ username: username.slice(0, 64) }, 'sign-in refused');
      throw new HttpError(401, 'unauthorized', 'wrong username or password');
    }
    const { token, expiresAt } = await opts.staffTokens.issue(staff);
    req.log.info({ staffId: staff.id, role: staff.role }, 'signed in');
    return reply.send({ token, expiresAt, staff });
  });
}

/** The bank system's API key: `x-api-key: SECRET` or `Authorization: ApiKey SECRET`. */
export function requireApiKey(apiKeys: ApiKeys) {
  return async (req: FastifyRequest) => {
    const header = req.headers['x-api-key'];
    const auth = req.headers.authorization;
    const secret = typeof header === 'string' ? header : auth?.startsWith('ApiKey ') ? auth.slice(7) : undefined;
    const keyId = apiKeys.identify(secret);
    if (!keyId) throw new HttpError(401, 'unauthorized', 'a valid API key is required');
    req.apiKeyId = keyId;
  };
}

/** A staff JWT in `Authorization: Bearer`, with one of the given roles. */
export function requireStaff(staffTokens: StaffTokens, roles: readonly StaffRole[]) {
  return async (req: FastifyRequest) => {
    const auth = req.headers.authorization;
    if (!auth?.startsWith('Bearer ')) throw new HttpError(401, 'unauthorized', 'a staff token is required');
    const result = await staffTokens.verify(auth.slice(7));
    if (!result.ok) throw new HttpError(401, result.error, result.error === 'token_expired' ? 'the sign-in has expired' : 'invalid staff token');
    if (!roles.includes(result.staff.role)) throw new HttpError(403, 'forbidden', `this needs the role ${roles.join(' or ')}`);
    req.staff = result.staff;
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    apiKeyId?: string;
    staff?: StaffIdentity;
  }
}
