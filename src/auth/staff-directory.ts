import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { businessTypeSchema, languageSchema } from '../../signaling/protocol.ts';
import { PASSWORD_HASH_PATTERN, verifyPassword } from './passwords.ts';

export const STAFF_ROLES = ['teller', 'supervisor', 'compliance'] as const;
export const staffRoleSchema = z.enum(STAFF_ROLES);
export type StaffRole = z.infer<typeof staffRoleSchema>;

/**
 * What a teller may approve (business scopes; a rejection is always allowed). The server enforces
 * it at the decision, not only the console. Unset in the directory: the narrowest.
 */
export const APPROVAL_SCOPES = ['consult_only', 'account_queries', 'full_service'] as const;
export const approvalScopeSchema = z.enum(APPROVAL_SCOPES);
export type ApprovalScope = z.infer<typeof approvalScopeSchema>;
export const SCOPE_BUSINESS_TYPES: Readonly<Record<ApprovalScope, readonly z.infer<typeof businessTypeSchema>[]>> = {
  consult_only: ['consultation'],
  account_queries: ['consultation', 'wealth_product'],
  full_service: ['consultation', 'wealth_product', 'corporate_account_opening'],
};

export const staffSkillsSchema = z.object({
  businessTypes: z.array(businessTypeSchema).default([]),
  languages: z.array(languageSchema).default([]),
});
export type StaffSkills = z.infer<typeof staffSkillsSchema>;

const staffMemberSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
    username: z.string().min(1).max(64),
    displayName: z.string().min(1).max(128),
    role: staffRoleSchema,
    passwordHash: z.string().regex(PASSWORD_HASH_PATTERN, 'expected scrypt$N$r$p$salt$hash'),
    skills: staffSkillsSchema.default({ businessTypes: [], languages: [] }),
    approvalScope: approvalScopeSchema.default('consult_only'),
  })
  .strict();
export type StaffMember = z.infer<typeof staffMemberSchema>;
export type PublicStaff = Omit<StaffMember, 'passwordHash' | 'username'>;

const directorySchema = z.object({ staff: z.array(staffMemberSchema).min(1) }).strict();

export const DEMO_STAFF_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../config/staff.demo.yaml');

export class StaffDirectory {
  private readonly byUsername: Map<string, StaffMember>;
  private readonly byId: Map<string, StaffMember>;
  /** A hash to compare against for unknown users, so a login takes as long either way. */
  private readonly decoyHash: string;

  constructor(members: StaffMember[], readonly source: string) {
    this.byUsername = new Map(members.map((m) => [m.username.toLowerCase(), m]));
    this.byId = new Map(members.map((m) => [m.id, m]));
    if (this.byUsername.size !== members.length || this.byId.size !== members.length) {
      throw new Error(`staff directory ${source}: duplicate id or username`);
    }
    this.decoyHash = members[0]!.passwordHash;
  }

  /** Reads and validates a YAML or JSON file (JSON is YAML). Errors name the file and the field. */
  static load(file: string): StaffDirectory {
    const text = readFileSync(file, 'utf8');
    const parsed = directorySchema.safeParse(parseYaml(text));
    if (!parsed.success) {
      const detail = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      throw new Error(`staff directory ${file} is invalid: ${detail}`);
    }
    return new StaffDirectory(parsed.data.staff, file);
  }

  async authenticate(username: string, password: string): Promise<PublicStaff | undefined> {
    const member = this.byUsername.get(username.toLowerCase());
    const ok = await verifyPassword(password, member?.passwordHash ?? this.decoyHash);
    return ok && member ? toPublic(member) : undefined;
  }

  get(id: string): PublicStaff | undefined {
    const m = this.byId.get(id);
    return m && toPublic(m);
  }
}

function toPublic({ passwordHash: _h, username: _u, ...rest }: StaffMember): PublicStaff {
  return rest;
}
