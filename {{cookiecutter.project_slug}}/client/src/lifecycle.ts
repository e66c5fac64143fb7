/**
 * The connect / reconnect state machine shared by both clients.
 *
 * A client supplies `connect(token)` (start one attempt) and `disconnect()`
 * (drop it silently) and reports back with `opened()`, `dropped()` or
 * `failed()`. The lifecycle owns everything else: the state and its
 * listeners, error listeners, fetching a fresh token for every attempt,
 * backoff between attempts, dropping the connection when the browser goes
 * offline and reconnecting at once when it comes back online, and a `close()`
 * that really stops.
 */
import { Backoff, type BackoffOptions } from "./backoff.js";
import { RealtimeError, reportHandlerError } from "./errors.js";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface LifecycleHooks {
  /** Start one connection attempt with this token. */
  connect(token: string): void;
  /** Tear down the current attempt or connection without reporting anything. */
  disconnect(): void;
}

export interface LifecycleOptions {
  getToken: () => string | Promise<string>;
  backoff?: BackoffOptions | undefined;
  /** A connection that stayed open this long (ms) resets the backoff when it drops. */
  stableAfter: number;
  /** Where the `online` event comes from (default: `globalThis`, the window in a browser). */
  onlineEvents?: Pick<EventTarget, "addEventListener" | "removeEventListener"> | undefined;
  random?: (() => number) | undefined;
}

export interface DropOptions {
  /** The server asked clients to come back later (WS 1001/1012/1013, HTTP 503). */
  later?: boolean;
  /** Wait at least this long (ms) before the next attempt only (HTTP `Retry-After`). */
  atLeast?: number;
}

/** Delay floor (ms) after a "come back later" close: not at once, even on a lucky jitter roll. */
export const COME_BACK_LATER_MS = 1000;

export class Lifecycle {
  private current: ConnectionState = "connecting";
  private readonly stateHandlers = new Set<(state: ConnectionState) => void>();
  private readonly errorHandlers = new Set<(error: RealtimeError) => void>();
  private readonly backoff: Backoff;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private openedAt: number | undefined;
  // Each attempt gets a number; a token that arrives for an older attempt is dropped.
  private attempt = 0;
  private readonly onlineTarget: LifecycleOptions["onlineEvents"];
  private readonly handleOnline = (): void => this.reconnectNow();
  private readonly handleOffline = (): void => this.wentOffline();

  constructor(
    private readonly hooks: LifecycleHooks,
    private readonly options: LifecycleOptions,
  ) {
    this.backoff = new Backoff(options.backoff, options.random);
    this.onlineTarget =
      options.onlineEvents ??
      (typeof (globalThis as Partial<EventTarget>).addEventListener === "function"
        ? (globalThis as unknown as EventTarget)
        : undefined);
  }

  /** The current state. */
  get state(): ConnectionState {
    return this.current;
  }

  /** Whether `close()` was called or a fatal error happened. */
  get closed(): boolean {
    return this.current === "closed";
  }

  /** Connect for the first time. */
  start(): void {
    if (this.closed) return; // closed before it started
    this.onlineTarget?.addEventListener("online", this.handleOnline);
    this.onlineTarget?.addEventListener("offline", this.handleOffline);
    this.attemptNow("connecting");
  }

  /** The current attempt succeeded. */
  opened(): void {
    if (this.closed) return;
    this.openedAt = Date.now();
    this.setState("open");
  }

  /** The connection was lost or the attempt failed, and trying again makes sense. */
  dropped(error?: RealtimeError, options: DropOptions = {}): void {
    if (this.closed) return;
    this.hooks.disconnect();
    if (error) this.emitError(error);
    if (this.closed) return; // an error handler may have called close()
    const stable =
      this.openedAt !== undefined && Date.now() - this.openedAt >= this.options.stableAfter;
    this.openedAt = undefined;
    if (stable && !options.later) this.backoff.reset();
    const delay = this.backoff.next(
      Math.max(options.later ? COME_BACK_LATER_MS : 0, options.atLeast ?? 0),
    );
    this.setState("reconnecting");
    this.clearRetry();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.attemptNow("reconnecting");
    }, delay);
  }

  /** Give up for good: report `error` (made fatal) and close. */
  failed(error: RealtimeError): void {
    if (this.closed) return;
    const fatal = error.fatal
      ? error
      : new RealtimeError(error.message, {
          fatal: true,
          ...(error.status !== undefined && { status: error.status }),
          ...(error.closeCode !== undefined && { closeCode: error.closeCode }),
          ...(error.reason !== undefined && { reason: error.reason }),
        });
    this.shutDown();
    this.emitError(fatal);
  }

  /** Stop: no more attempts, no more events. */
  close(): void {
    if (this.closed) return;
    this.shutDown();
  }

  /** Remember the delay (ms) the server asked for before reconnecting. */
  setServerDelay(ms: number | undefined): void {
    this.backoff.setServerDelay(ms);
  }

  /** Report a problem that the client recovers from by itself. */
  emitError(error: RealtimeError): void {
    for (const handler of [...this.errorHandlers]) {
      try {
        handler(error);
      } catch (e) {
        reportHandlerError(e);
      }
    }
  }

  onState(handler: (state: ConnectionState) => void): () => void {
    this.stateHandlers.add(handler);
    return () => this.stateHandlers.delete(handler);
  }

  onError(handler: (error: RealtimeError) => void): () => void {
    this.errorHandlers.add(handler);
    return () => this.errorHandlers.delete(handler);
  }

  /** Replace the open connection at once with a new attempt (and a fresh token), no backoff. */
  renew(): void {
    if (this.current !== "open") return;
    this.hooks.disconnect();
    this.openedAt = undefined;
    this.attemptNow("reconnecting");
  }

  /** Skip the wait: the network is back, so the next attempt has a real chance. */
  reconnectNow(): void {
    if (this.current !== "reconnecting" || this.retryTimer === undefined) return;
    this.clearRetry();
    this.backoff.reset();
    this.attemptNow("reconnecting");
  }

  private wentOffline(): void {
    // No connection survives the loss of the network, but a stream can take
    // minutes to notice: drop it now, and let `online` bring the next attempt.
    if (this.current === "open") this.dropped(new RealtimeError("the browser went offline"));
  }

  private attemptNow(state: "connecting" | "reconnecting"): void {
    if (this.closed) return;
    this.setState(state);
    const attempt = ++this.attempt;
    let token: string | Promise<string>;
    try {
      token = this.options.getToken();
    } catch (e) {
      this.tokenFailed(e);
      return;
    }
    Promise.resolve(token).then(
      (value) => {
        if (this.closed || attempt !== this.attempt) return;
        this.hooks.connect(value);
      },
      (e: unknown) => {
        if (this.closed || attempt !== this.attempt) return;
        this.tokenFailed(e);
      },
    );
  }

  private tokenFailed(cause: unknown): void {
    const detail = cause instanceof Error ? cause.message : String(cause);
    // The token source may be down for a moment (an auth server restarting): retry it too.
    this.dropped(new RealtimeError(`getToken() failed: ${detail}`));
  }

  private shutDown(): void {
    this.clearRetry();
    this.attempt += 1;
    this.onlineTarget?.removeEventListener("online", this.handleOnline);
    this.onlineTarget?.removeEventListener("offline", this.handleOffline);
    this.hooks.disconnect();
    this.setState("closed");
  }

  private clearRetry(): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private setState(state: ConnectionState): void {
    if (state === this.current) return;
    this.current = state;
    for (const handler of [...this.stateHandlers]) {
      try {
        handler(state);
      } catch (e) {
        reportHandlerError(e);
      }
    }
  }
}
