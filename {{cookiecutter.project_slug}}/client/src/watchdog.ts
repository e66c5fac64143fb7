/** A timer that fires when nothing kicked it for a while: a silent connection is a dead one. */
export class Watchdog {
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly onSilence: () => void,
  ) {}

  /** (Re)start the countdown: call on every sign of life. */
  kick(): void {
    this.stop();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.onSilence();
    }, this.timeoutMs);
  }

  /** Stop watching. */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
