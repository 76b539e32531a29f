/** A counting semaphore that hands freed slots to waiters in arrival order. */
export class Slots {
  private active = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(private readonly size: number) {}

  /** Slots taken: publishes in flight. */
  get taken(): number {
    return this.active;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Takes a slot now if one is free (and nobody is queued before the caller). */
  tryAcquire(): boolean {
    if (this.active >= this.size || this.waiters.length > 0) return false;
    this.active++;
    return true;
  }

  /** Resolves once the caller holds a slot. */
  acquire(): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Frees a slot, or passes it straight to the longest waiter. */
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.active--;
  }
}
