/** Small DOM helpers shared by the pages (no framework: the customer page must stay light for phones). */
import type { CallStats } from './call.ts';

/** The element with this data-testid (the pages' stable handles, listed in client-web/README.md). */
export function byTestId<T extends HTMLElement = HTMLElement>(testId: string, root: ParentNode = document): T {
  const el = root.querySelector<T>(`[data-testid="${testId}"]`);
  if (!el) throw new Error(`missing element data-testid="${testId}"`);
  return el;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el as T;
}

/** Shows exactly one of the page's views (`<section class="view">`); the others get `hidden`. */
export function showView(id: string): void {
  for (const view of document.querySelectorAll<HTMLElement>('.view')) view.hidden = view.id !== id;
  document.body.dataset.view = id;
}

export function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** "less than a minute", "about 3 minutes". */
export function formatWait(seconds: number): string {
  if (seconds < 60) return 'less than a minute';
  const minutes = Math.round(seconds / 60);
  return minutes === 1 ? 'about 1 minute' : `about ${minutes} minutes`;
}

/** "0:07", "12:45". */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${m}:${String(s).padStart(2, '0')}`;
}

export const BUSINESS_TYPE_LABELS: Record<string, string> = {
  corporate_account_opening: 'Corporate account opening',
  wealth_product: 'Wealth product',
  consultation: 'Consultation',
};

const languageNames = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], { type: 'language' }) : undefined;
export function languageLabel(code: string): string {
  try {
    return languageNames?.of(code) ?? code;
  } catch {
    return code;
  }
}

/**
 * What end-to-end tests and the call-setup benchmark read from a page: `window.__videoteller`.
 * Read-only: the page state and the call's RTP statistics.
 */
export interface TestHook {
  page: 'customer' | 'teller' | 'supervisor' | 'compliance';
  state(): string;
  stats(): Promise<CallStats | null>;
}

export function exposeTestHook(hook: TestHook): void {
  (window as unknown as { __videoteller: TestHook }).__videoteller = hook;
}
