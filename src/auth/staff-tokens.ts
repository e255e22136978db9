import { jwtVerify, SignJWT, errors as joseErrors } from 'jose';
import { z } from 'zod';
import { approvalScopeSchema, staffRoleSchema, staffSkillsSchema, type ApprovalScope, type PublicStaff } from './staff-directory.ts';

const ISSUER = 'videoteller';
const AUDIENCE = 'videoteller-staff';

const claimsSchema = z.object({
  sub: z.string(),
  name: z.string(),
  role: staffRoleSchema,
  skills: staffSkillsSchema,
  // Tokens issued before scopes existed carry none: the narrowest applies.
  scope: approvalScopeSchema.default('consult_only'),
});

export interface StaffIdentity {
  id: string;
  displayName: string;
  role: z.infer<typeof staffRoleSchema>;
  skills: z.infer<typeof staffSkillsSchema>;
  /** What this teller may approve; absent means the narrowest scope. */
  approvalScope?: ApprovalScope;
}

export type StaffTokenError = 'token_invalid' | 'token_expired';

/** Staff JWTs (HS256). Several nodes share JWT_SECRET; one node may generate its own. */
export class StaffTokens {
  private readonly key: Uint8Array;
  constructor(secret: string, private readonly ttlS: number) {
    this.key = new TextEncoder().encode(secret);
  }

  async issue(staff: Omit<PublicStaff, 'approvalScope'> & { approvalScope?: ApprovalScope }): Promise<{ token: string; expiresAt: number }> {
    const expiresAt = Math.floor(Date.now() / 1000) + this.ttlS;
    const token = await new SignJWT({ name: staff.displayName, role: staff.role, skills: staff.skills, scope: staff.approvalScope ?? 'consult_only' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(staff.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(expiresAt)
      .sign(this.key);
    return { token, expiresAt: expiresAt * 1000 };
  }

  async verify(token: string): Promise<{ ok: true; staff: StaffIdentity } | { ok: false; error: StaffTokenError }> {
    try {
      const { payload } = await jwtVerify(token, this.key, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] });
      const claims = claimsSchema.safeParse(payload);
      if (!claims.success) return { ok: false, error: 'token_invalid' };
      const { sub, name, role, skills, scope } = claims.data;
      return { ok: true, staff: { id: sub, displayName: name, role, skills, approvalScope: scope } };
    } catch (err) {
      return { ok: false, error: err instanceof joseErrors.JWTExpired ? 'token_expired' : 'token_invalid' };
    }
  }
}
