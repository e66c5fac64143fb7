/** Reconnect delays: exponential, capped, with full jitter ("AWS backoff"). */

/** How long to wait between reconnect attempts, in milliseconds. */
export interface BackoffOptions {
  /** Ceiling of the first delay (default 500). */
  initialDelay?: number;
  /** No delay grows beyond this (default 30000), unless the server asks for longer. */
  maxDelay?: number;
}

export class Backoff {
  private readonly initialDelay: number;
  private readonly maxDelay: number;
  private attempt = 0;
  private serverDelay: number | undefined;

  constructor(
    options: BackoffOptions = {},
    private readonly random: () => number = Math.random,
  ) {
    this.initialDelay = Math.max(0, options.initialDelay ?? 500);
    this.maxDelay = Math.max(this.initialDelay, options.maxDelay ?? 30_000);
  }

  /** How many delays were handed out since the last `reset()`. */
  get attempts(): number {
    return this.attempt;
  }

  /**
   * The next delay: uniformly random in [0, min(max, initial * 2^n)] ("full
   * jitter") so that many clients dropped at once don't come back in step. A
   * delay the server asked for (SSE `retry:`, HTTP `Retry-After`) or `atLeast`
   * ("come back later" closes) is a floor that the jitter is added on top of:
   * never sooner than asked, and still spread out.
   */
  next(atLeast = 0): number {
    // The exponent is bounded so that a long outage can't overflow to Infinity.
    const ceiling = Math.min(this.maxDelay, this.initialDelay * 2 ** Math.min(this.attempt, 32));
    this.attempt += 1;
    const floor = Math.max(this.serverDelay ?? 0, atLeast);
    return Math.round(floor + this.random() * ceiling);
  }

  /** Start over from the smallest delay (after a connection proved healthy). */
  reset(): void {
    this.attempt = 0;
  }

  /** Remember the server's requested reconnection delay (ms); `undefined` forgets it. */
  setServerDelay(ms: number | undefined): void {
    this.serverDelay = ms === undefined || !Number.isFinite(ms) || ms < 0 ? undefined : ms;
  }
}
