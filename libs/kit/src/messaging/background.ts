import { ROOT_CONTEXT, context } from '@opentelemetry/api';

/**
 * Runs `pass` in the background: at start, every `pollMs` after the last pass ended, and at
 * once when kicked. Kicks during a pass are coalesced into one more pass right after it; two
 * passes never overlap. Passes belong to no request's trace.
 */
export class BackgroundTask {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly pollMs: number,
  ) {}

  get isStopped(): boolean {
    return this.stopped;
  }

  start(): void {
    this.schedule(0);
  }

  /** Asks for a pass now. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = context.with(ROOT_CONTEXT, () =>
      setTimeout(() => {
        this.running = this.pass().finally(() => {
          this.running = undefined;
          const more = this.again;
          this.again = false;
          this.schedule(more ? 0 : this.pollMs);
        });
      }, delay),
    );
  }

  /** Stops scheduling and waits for a pass under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
