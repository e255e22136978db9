/**
 * Grace periods after a dropped connection: the action runs only if nobody cancels it in time
 * (the customer's phone or the teller's console came back).
 */
export class GraceTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly ms: number) {}

  start(key: string, action: () => void): void {
    this.cancel(key);
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        action();
      }, this.ms),
    );
  }

  /** Returns true when a pending action was cancelled. */
  cancel(key: string): boolean {
    const t = this.timers.get(key);
    if (!t) return false;
    clearTimeout(t);
    this.timers.delete(key);
    return true;
  }

  clear(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
