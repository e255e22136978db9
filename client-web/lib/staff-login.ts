/**
 * Staff sign-in shared by the staff pages (teller console, supervisor board, compliance replay):
 * POST /api/auth/login, the answer checked with zod, the staff JWT kept in sessionStorage (this
 * tab only) until it expires. Each page names its role; a person of another role is told so
 * instead of getting a page the server would refuse anyway.
 *
 * The page provides the form's elements by data-testid: `username`, `password`, `login`,
 * `login-error`, inside `#login-form`.
 */
import { z } from 'zod';
import { businessTypeSchema, languageSchema, protocolErrorSchema } from '../../signaling/protocol.ts';
import { byId, byTestId } from './dom.ts';

export const loginResponseSchema = z.object({
  token: z.string().min(1),
  /** Epoch ms. */
  expiresAt: z.number(),
  staff: z.object({
    id: z.string(),
    displayName: z.string(),
    role: z.string(),
    skills: z.object({ businessTypes: z.array(businessTypeSchema), languages: z.array(languageSchema) }),
  }),
});
export type StaffLogin = z.infer<typeof loginResponseSchema>;

export interface StaffLoginOptions {
  /** sessionStorage key of this page's sign-in. */
  storageKey: string;
  role: 'teller' | 'supervisor' | 'compliance';
  /** Shown to a person of another role. */
  wrongRoleMessage: string;
  onSignedIn(login: StaffLogin): void;
}

export interface StaffLoginControl {
  /** The sign-in kept in this tab, if it is still valid for a while. */
  stored(): StaffLogin | undefined;
  /** Forgets the sign-in and shows the form again, with a message if given. */
  signOut(message?: string): void;
}

export function setupStaffLogin(opts: StaffLoginOptions): StaffLoginControl {
  const error = byTestId('login-error');
  byId<HTMLFormElement>('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = byTestId<HTMLInputElement>('username').value.trim();
    const password = byTestId<HTMLInputElement>('password').value;
    const button = byTestId<HTMLButtonElement>('login');
    error.hidden = true;
    if (!username || !password) {
      error.textContent = 'Enter your username and password.';
      error.hidden = false;
      return;
    }
    button.disabled = true;
    try {
      const res = await fetch('/api/auth/login', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password }),
      });
      const body: unknown = await res.json().catch(() => undefined);
      if (!res.ok) {
        const err = z.object({ error: protocolErrorSchema }).safeParse(body);
        error.dataset.code = err.success ? err.data.error.code : String(res.status);
        throw new Error(res.status === 401 ? 'Wrong username or password.' : err.success ? err.data.error.message : `Sign-in failed (${res.status}).`);
      }
      const parsed = loginResponseSchema.safeParse(body);
      if (!parsed.success) throw new Error('The server sent an unexpected answer.');
      if (parsed.data.staff.role !== opts.role) throw new Error(opts.wrongRoleMessage);
      sessionStorage.setItem(opts.storageKey, JSON.stringify(parsed.data));
      byTestId<HTMLInputElement>('password').value = '';
      opts.onSignedIn(parsed.data);
    } catch (err) {
      error.textContent = err instanceof TypeError ? 'Cannot reach the server.' : (err as Error).message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  return {
    stored() {
      try {
        const parsed = loginResponseSchema.safeParse(JSON.parse(sessionStorage.getItem(opts.storageKey) ?? 'null'));
        return parsed.success && parsed.data.expiresAt > Date.now() + 10_000 && parsed.data.staff.role === opts.role ? parsed.data : undefined;
      } catch {
        return undefined;
      }
    },
    signOut(message) {
      sessionStorage.removeItem(opts.storageKey);
      error.hidden = !message;
      error.textContent = message ?? '';
    },
  };
}
