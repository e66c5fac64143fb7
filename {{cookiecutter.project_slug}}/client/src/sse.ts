/**
 * `RealtimeSSEClient`: one channel's Server-Sent Events stream over `fetch`,
 * resumed from the last event id after every reconnect.
 *
 * Not `EventSource`, because that can't send an `Authorization` header, can't
 * show the HTTP status of a refusal (so it retries a bad token forever) and
 * hides heartbeat comments (so a dead connection goes unnoticed).
 */
import type { BackoffOptions } from "./backoff.js";
import { DEFAULT_HEARTBEAT_INTERVAL } from "./defaults.js";
import { RealtimeError, reportHandlerError } from "./errors.js";
import { type ConnectionState, Lifecycle } from "./lifecycle.js";
import { type SSEMessage, SSEParser } from "./sse-parser.js";
import { renewalDelay, tokenExpiry } from "./token.js";
import { Watchdog } from "./watchdog.js";

export { RealtimeError } from "./errors.js";
export type { ConnectionState } from "./lifecycle.js";

export interface EventMeta {
  id: string;
  event: string;
}

export type EventHandler = (data: unknown, meta: EventMeta) => void;

export interface RealtimeSSEClientOptions {
  /** The service's base URL, e.g. "https://api.example.com". */
  url: string;
  /** The channel to follow. */
  channel: string;
  /** Called before every (re)connect, so a renewed token is picked up. */
  getToken: () => string | Promise<string>;
  /** The server's `HEARTBEAT_INTERVAL` in seconds; 2x that of silence means a dead connection. */
  heartbeatInterval?: number;
  /** Start after this event id (say, the last one your app stored). */
  lastEventId?: string;
  /** Reconnect delays in ms (full jitter, capped). */
  backoff?: BackoffOptions;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
}

/** Statuses that no retry can fix: a wrong URL, channel name, token or permission. */
const FATAL_STATUSES = new Set([400, 401, 403, 404]);

export class RealtimeSSEClient {
  private readonly url: string;
  private readonly fetchImpl: typeof fetch;
  private readonly handlers = new Map<string, Set<EventHandler>>();
  private readonly resyncHandlers = new Set<() => void>();
  private readonly lifecycle: Lifecycle;
  private readonly watchdog: Watchdog;
  private readonly silenceMs: number;
  private controller: AbortController | undefined;
  private lastId: string | undefined;
  private renewTimer: ReturnType<typeof setTimeout> | undefined;
  // The expiry of the token whose renewal was last started (see `planRenewal`).
  private renewedExpiry: number | undefined;

  constructor(options: RealtimeSSEClientOptions) {
    const base = options.url.replace(/\/+$/, "");
    this.url = `${base}/channels/${encodeURIComponent(options.channel)}/events`;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.lastId = options.lastEventId;
    this.silenceMs = 2 * (options.heartbeatInterval ?? DEFAULT_HEARTBEAT_INTERVAL) * 1000;
    this.watchdog = new Watchdog(this.silenceMs, () => this.silent());
    this.lifecycle = new Lifecycle(
      { connect: (token) => void this.connect(token), disconnect: () => this.disconnect() },
      { getToken: options.getToken, backoff: options.backoff, stableAfter: this.silenceMs },
    );
    // Start after the caller had a chance to attach handlers.
    queueMicrotask(() => this.lifecycle.start());
  }

  /** The id of the last event received: where a reconnect resumes. */
  get lastEventId(): string | undefined {
    return this.lastId;
  }

  /** The connection state right now. */
  get state(): ConnectionState {
    return this.lifecycle.state;
  }

  /** Call `handler` for every event named `event` ("message" by default; "*" for all). */
  on(event: string, handler: EventHandler): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler);
    return () => void set.delete(handler);
  }

  /** Follow the connection state: "connecting", "open", "reconnecting", "closed". */
  onState(handler: (state: ConnectionState) => void): () => void {
    return this.lifecycle.onState(handler);
  }

  /** Errors; `error.fatal` means the client gave up and is now closed. */
  onError(handler: (error: RealtimeError) => void): () => void {
    return this.lifecycle.onError(handler);
  }

  /** The server can't replay what was missed: refetch your state, then events continue live. */
  onResync(handler: () => void): () => void {
    this.resyncHandlers.add(handler);
    return () => void this.resyncHandlers.delete(handler);
  }

  /** Stop for good: aborts the stream and cancels any pending reconnect. */
  close(): void {
    this.lifecycle.close();
  }

  private async connect(token: string): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    const headers: Record<string, string> = {
      Accept: "text/event-stream",
      Authorization: `Bearer ${token}`,
    };
    if (this.lastId !== undefined && this.lastId !== "") headers["Last-Event-ID"] = this.lastId;
    // A server that accepts the TCP connection but never answers is as dead as a silent one.
    this.watchdog.kick();
    let response: Response;
    try {
      response = await this.fetchImpl(this.url, {
        headers,
        signal: controller.signal,
        cache: "no-store",
      });
    } catch (e) {
      if (controller === this.controller) this.lifecycle.dropped(networkError(e));
      return;
    }
    if (controller !== this.controller) return;
    if (!response.ok) {
      await this.refused(response);
      return;
    }
    const type = response.headers.get("content-type") ?? "";
    if (!type.toLowerCase().startsWith("text/event-stream") || !response.body) {
      void response.body?.cancel();
      this.lifecycle.failed(
        new RealtimeError(`expected text/event-stream, got ${type || "no content type"}`, {
          status: response.status,
        }),
      );
      return;
    }
    this.lifecycle.opened();
    this.planRenewal(token);
    await this.read(response.body, controller);
  }

  private async read(body: ReadableStream<Uint8Array>, controller: AbortController): Promise<void> {
    const parser = new SSEParser(
      {
        onMessage: (message) => this.dispatch(message),
        onRetry: (ms) => this.lifecycle.setServerDelay(ms),
      },
      this.lastId ?? "",
    );
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (controller !== this.controller) return;
        if (done) break;
        // Any bytes at all, heartbeat comments included, prove the connection alive.
        this.watchdog.kick();
        parser.pushBytes(value);
        if (controller !== this.controller) return;
      }
    } catch (e) {
      if (controller === this.controller) this.lifecycle.dropped(networkError(e));
      return;
    } finally {
      reader.releaseLock();
    }
    // The server ended the stream (shutdown, token expiry, slow consumer): resume.
    this.lifecycle.dropped();
  }

  private async refused(response: Response): Promise<void> {
    const controller = this.controller;
    const detail = await errorDetail(response);
    if (controller !== this.controller) return;
    const status = response.status;
    const message = `HTTP ${status}${detail ? `: ${detail}` : ""}`;
    if (FATAL_STATUSES.has(status)) {
      this.lifecycle.failed(
        new RealtimeError(message, { fatal: true, status, ...(detail && { reason: detail }) }),
      );
      return;
    }
    const retryAfter = Number(response.headers.get("retry-after"));
    this.lifecycle.dropped(
      new RealtimeError(message, { status, ...(detail && { reason: detail }) }),
      {
        later: status === 503 || status === 429,
        ...(Number.isFinite(retryAfter) && retryAfter > 0 && { atLeast: retryAfter * 1000 }),
      },
    );
  }

  private dispatch(message: SSEMessage): void {
    if (message.event === "resync") {
      for (const handler of [...this.resyncHandlers]) call(() => handler());
      return;
    }
    if (message.id !== "") this.lastId = message.id;
    let data: unknown;
    try {
      data = JSON.parse(message.data);
    } catch {
      data = message.data; // not JSON: hand over the text as it came
    }
    const meta: EventMeta = { id: message.id, event: message.event };
    for (const name of [message.event, "*"]) {
      const set = this.handlers.get(name);
      if (set) for (const handler of [...set]) call(() => handler(data, meta));
    }
  }

  /**
   * The server ends a stream when its token expires. Reconnecting a little
   * before that, with a fresh token, resumes at once instead of after the
   * server's `retry:` delay.
   */
  private planRenewal(token: string): void {
    const expiry = tokenExpiry(token);
    // getToken() handed back the same token again: renewing would only loop.
    if (expiry === undefined || expiry === this.renewedExpiry) return;
    this.renewTimer = setTimeout(() => {
      this.renewTimer = undefined;
      this.renewedExpiry = expiry;
      this.lifecycle.renew();
    }, renewalDelay(expiry));
  }

  private silent(): void {
    const seconds = this.silenceMs / 1000;
    this.lifecycle.dropped(new RealtimeError(`no data or heartbeat for ${seconds} s`));
  }

  private disconnect(): void {
    this.watchdog.stop();
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    const controller = this.controller;
    this.controller = undefined;
    controller?.abort();
  }
}

function call(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    reportHandlerError(e);
  }
}

function networkError(cause: unknown): RealtimeError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new RealtimeError(`connection failed: ${detail}`);
}

async function errorDetail(response: Response): Promise<string> {
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text) as { detail?: unknown };
      if (typeof body.detail === "string") return body.detail;
    } catch {
      // Not the service's JSON error: fall back to the raw text.
    }
    return text.slice(0, 200);
  } catch {
    return "";
  }
}
