/**
 * `RealtimeWebSocketClient`: many channels over one WebSocket (`/ws`), with
 * subscriptions that survive reconnects and publishes that survive short outages.
 */
import type { BackoffOptions } from "./backoff.js";
import { DEFAULT_HEARTBEAT_INTERVAL } from "./defaults.js";
import { RealtimeError, reportHandlerError } from "./errors.js";
import { type ConnectionState, Lifecycle } from "./lifecycle.js";
import { renewalDelay, tokenExpiry } from "./token.js";
import { Watchdog } from "./watchdog.js";

export { RealtimeError } from "./errors.js";
export type { ConnectionState } from "./lifecycle.js";
export { tokenExpiry } from "./token.js";

export interface MessageMeta {
  id: string;
  event: string;
  channel: string;
}

export type MessageHandler = (data: unknown, meta: MessageMeta) => void;

/** The part of a browser `WebSocket` the client uses (so tests can hand in a fake). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export interface RealtimeWebSocketClientOptions {
  /** The service's base URL ("https://api.example.com"); the client connects to wss://…/ws. */
  url: string;
  /** Called before every (re)connect, so a renewed token is picked up. */
  getToken: () => string | Promise<string>;
  /** The server's `HEARTBEAT_INTERVAL` in seconds; 2x that of silence means a dead connection. */
  heartbeatInterval?: number;
  /** Publishes kept while disconnected (default 100); beyond that `publish()` rejects at once. */
  maxQueuedPublishes?: number;
  /** How long (ms) a request may wait for the server's answer once sent (default 10000). */
  requestTimeout?: number;
  /** Reconnect delays in ms (full jitter, capped). */
  backoff?: BackoffOptions;
  /** Opens the socket (default: `new WebSocket(url)`). */
  createWebSocket?: (url: string) => SocketLike;
}

// Frames the server sends (docs/websocket.md, "Server → client").
type ServerFrame =
  | { type: "message"; channel: string; id: string; event: string; data: unknown }
  | { type: "subscribed"; channel: string; recovered: boolean; ref?: string }
  | { type: "unsubscribed"; channel: string; reason?: string; ref?: string }
  | { type: "published"; channel: string; id: string; ref?: string }
  | { type: "refreshed"; ref?: string }
  | { type: "ping" }
  | { type: "error"; code: string; detail?: string; ref?: string };

/** Any frame answering a request (matched by its `ref`). */
type Reply = ServerFrame;

interface Pending {
  resolve(frame: Reply): void;
  reject(error: RealtimeError): void;
  timer: ReturnType<typeof setTimeout>;
}

interface Subscription {
  handler: MessageHandler;
  lastEventId: string | undefined;
  confirmed: boolean;
  waiters: Array<{ resolve(value: { recovered: boolean }): void; reject(e: RealtimeError): void }>;
}

interface QueuedPublish {
  channel: string;
  data: unknown;
  event: string | undefined;
  /** Sent with every attempt: the server stores the publish once, however often it is retried. */
  key: string;
  resolve(value: { id: string }): void;
  reject(error: RealtimeError): void;
}

/** Close codes that mean "the server is going away or full: come back a little later". */
const COME_BACK_LATER = new Set([1001, 1012, 1013]);
/** Close code of an auth or policy refusal: retrying can't help. */
const POLICY_VIOLATION = 1008;
const OPEN = 1;
/** Wait (ms) before asking again after an `unavailable` or `rate_limited` answer. */
const TRANSIENT_RETRY_MS = 1000;

export class RealtimeWebSocketClient {
  private readonly url: string;
  private readonly createWebSocket: (url: string) => SocketLike;
  private readonly maxQueued: number;
  private readonly requestTimeout: number;
  private readonly lifecycle: Lifecycle;
  private readonly watchdog: Watchdog;
  private readonly silenceMs: number;
  private readonly getToken: () => string | Promise<string>;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly pending = new Map<string, Pending>();
  private readonly resyncHandlers = new Set<(channel: string) => void>();
  private queue: QueuedPublish[] = [];
  private socket: SocketLike | undefined;
  private nextRef = 0;
  private token: string | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: RealtimeWebSocketClientOptions) {
    this.url = webSocketUrl(options.url);
    this.getToken = options.getToken;
    this.createWebSocket =
      options.createWebSocket ?? ((url) => new WebSocket(url) as unknown as SocketLike);
    this.maxQueued = options.maxQueuedPublishes ?? 100;
    this.requestTimeout = options.requestTimeout ?? 10_000;
    this.silenceMs = 2 * (options.heartbeatInterval ?? DEFAULT_HEARTBEAT_INTERVAL) * 1000;
    this.watchdog = new Watchdog(this.silenceMs, () => this.silent());
    this.lifecycle = new Lifecycle(
      { connect: (token) => this.connect(token), disconnect: () => this.disconnect() },
      { getToken: options.getToken, backoff: options.backoff, stableAfter: this.silenceMs },
    );
    this.lifecycle.onState((state) => {
      if (state === "closed") this.rejectEverything();
    });
    // Start after the caller had a chance to attach handlers.
    queueMicrotask(() => this.lifecycle.start());
  }

  /** The connection state right now. */
  get state(): ConnectionState {
    return this.lifecycle.state;
  }

  /**
   * Receive `channel`'s events. Resolves once the server confirmed; `recovered`
   * is false when `lastEventId` was too old to replay from (see `onResync`).
   * The subscription is kept across reconnects, resuming from the last id seen.
   */
  subscribe(
    channel: string,
    handler: MessageHandler,
    options: { lastEventId?: string } = {},
  ): Promise<{ recovered: boolean }> {
    if (this.lifecycle.closed) return Promise.reject(closedError());
    let subscription = this.subscriptions.get(channel);
    if (subscription) {
      subscription.handler = handler;
      if (subscription.confirmed) return Promise.resolve({ recovered: true });
    } else {
      subscription = { handler, lastEventId: options.lastEventId, confirmed: false, waiters: [] };
      this.subscriptions.set(channel, subscription);
      if (this.isOpen()) this.sendSubscribe(channel, subscription);
    }
    const waiting = subscription;
    return new Promise((resolve, reject) => waiting.waiters.push({ resolve, reject }));
  }

  /** Stop receiving `channel`'s events (at once, locally; the server is told when connected). */
  async unsubscribe(channel: string): Promise<void> {
    const subscription = this.subscriptions.get(channel);
    if (!subscription) return;
    this.subscriptions.delete(channel);
    settleWaiters(subscription, new RealtimeError(`unsubscribed from ${channel}`));
    if (!this.isOpen()) return; // the next connection simply won't subscribe to it
    await this.request({ type: "unsubscribe", channel });
  }

  /**
   * Publish `data` to `channel`. While disconnected the publish waits in a
   * bounded queue and is sent on reconnect. Every publish carries an
   * idempotency key of its own, so one whose answer was lost with the
   * connection (or that met `unavailable`) is simply sent again: the server
   * stores it once and answers every attempt with the same id.
   */
  publish(channel: string, data: unknown, event?: string): Promise<{ id: string }> {
    if (this.lifecycle.closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      const key = newIdempotencyKey();
      const item: QueuedPublish = { channel, data, event, key, resolve, reject };
      if (this.isOpen()) {
        this.sendPublish(item);
      } else if (this.queue.length >= this.maxQueued) {
        reject(new RealtimeError(`publish queue full (${this.maxQueued} waiting while offline)`));
      } else {
        this.queue.push(item);
      }
    });
  }

  /**
   * Fetch a new token with `getToken()` and hand it to the open connection
   * (`refresh`). The client does this by itself shortly before the current
   * token's `exp`, so that the server never has to close the connection.
   */
  async refreshToken(): Promise<void> {
    const token = await this.getToken();
    if (!this.isOpen()) return; // the next connection asks getToken() itself
    await this.request({ type: "refresh", token });
    const previous = this.token;
    this.token = token;
    // The same expiry again (getToken() not renewing) would only repeat this refresh.
    if (previous === undefined || tokenExpiry(token) !== tokenExpiry(previous)) {
      this.scheduleRefresh();
    }
  }

  /** Follow the connection state: "connecting", "open", "reconnecting", "closed". */
  onState(handler: (state: ConnectionState) => void): () => void {
    return this.lifecycle.onState(handler);
  }

  /** Errors; `error.fatal` means the client gave up and is now closed. */
  onError(handler: (error: RealtimeError) => void): () => void {
    return this.lifecycle.onError(handler);
  }

  /** `channel` could not be resumed without a gap: refetch its state, events continue live. */
  onResync(handler: (channel: string) => void): () => void {
    this.resyncHandlers.add(handler);
    return () => void this.resyncHandlers.delete(handler);
  }

  /** Stop for good: closes the socket, cancels reconnects, rejects what is still waiting. */
  close(): void {
    this.lifecycle.close();
  }

  private connect(token: string): void {
    this.token = token;
    const url = `${this.url}${this.url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
    let socket: SocketLike;
    try {
      socket = this.createWebSocket(url);
    } catch (e) {
      this.lifecycle.failed(new RealtimeError(`can't open ${this.url}: ${String(e)}`));
      return;
    }
    this.socket = socket;
    // A handshake that never completes is as dead as a silent connection.
    this.watchdog.kick();
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.watchdog.kick();
      this.lifecycle.opened();
      this.scheduleRefresh();
      for (const [channel, subscription] of this.subscriptions) {
        this.sendSubscribe(channel, subscription);
      }
      const queued = this.queue;
      this.queue = [];
      for (const item of queued) this.sendPublish(item);
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      this.watchdog.kick();
      if (typeof event.data === "string") this.receive(event.data);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.closedByServer(event.code, event.reason);
    };
    socket.onerror = () => {
      // A close event always follows, with the code that matters.
    };
  }

  private closedByServer(code: number, reason: string): void {
    const text = `connection closed (${code}${reason ? `: ${reason}` : ""})`;
    const error = new RealtimeError(text, { closeCode: code, ...(reason && { reason }) });
    if (code === POLICY_VIOLATION) this.lifecycle.failed(error);
    else this.lifecycle.dropped(error, { later: COME_BACK_LATER.has(code) });
  }

  private receive(text: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      this.lifecycle.emitError(new RealtimeError("the server sent a frame that is not JSON"));
      return;
    }
    switch (frame.type) {
      case "message":
        this.deliver(frame);
        return;
      case "ping":
        this.send({ type: "pong" });
        return;
      case "error":
        if (frame.ref !== undefined && this.pending.has(frame.ref)) {
          this.settle(frame.ref, undefined, serverError(frame));
        } else {
          this.lifecycle.emitError(serverError(frame));
        }
        return;
      default:
        if ("ref" in frame && frame.ref !== undefined) this.settle(frame.ref, frame);
        else if (frame.type === "subscribed" && !frame.recovered) this.resync(frame.channel);
        else if (frame.type === "unsubscribed") this.revoked(frame.channel, frame.reason);
    }
  }

  /** The server lost continuity on a live subscription: events may be missing. */
  private resync(channel: string): void {
    if (!this.subscriptions.has(channel)) return;
    for (const handler of [...this.resyncHandlers]) {
      try {
        handler(channel);
      } catch (e) {
        reportHandlerError(e);
      }
    }
  }

  /** The server ended a subscription by itself (a refreshed token no longer allows it). */
  private revoked(channel: string, reason: string | undefined): void {
    const subscription = this.subscriptions.get(channel);
    if (!subscription) return;
    this.subscriptions.delete(channel);
    const error = new RealtimeError(`unsubscribed from ${channel}${reason ? `: ${reason}` : ""}`, {
      reason: "forbidden",
    });
    settleWaiters(subscription, error);
    this.lifecycle.emitError(error);
  }

  private deliver(frame: Extract<ServerFrame, { type: "message" }>): void {
    const subscription = this.subscriptions.get(frame.channel);
    if (!subscription) return; // unsubscribed while the event was on its way
    subscription.lastEventId = frame.id;
    const meta: MessageMeta = { id: frame.id, event: frame.event, channel: frame.channel };
    try {
      subscription.handler(frame.data, meta);
    } catch (e) {
      reportHandlerError(e);
    }
  }

  private sendSubscribe(channel: string, subscription: Subscription): void {
    const from = subscription.lastEventId;
    const frame: Record<string, unknown> = { type: "subscribe", channel };
    if (from !== undefined) frame["last_event_id"] = from;
    this.request(frame).then(
      (reply) => {
        if (this.subscriptions.get(channel) !== subscription) return;
        const recovered = reply.type === "subscribed" ? reply.recovered : true;
        subscription.confirmed = true;
        if (!recovered && from !== undefined) {
          for (const handler of [...this.resyncHandlers]) {
            try {
              handler(channel);
            } catch (e) {
              reportHandlerError(e);
            }
          }
        }
        settleWaiters(subscription, undefined, { recovered });
      },
      (error: RealtimeError) => {
        if (this.subscriptions.get(channel) !== subscription) return;
        if (error.reason === "lost") return; // re-sent by the next connection
        if (error.reason === "timeout") {
          // The server answers subscribes at once; a silent one means a broken connection.
          this.lifecycle.dropped(error);
          return;
        }
        if (error.reason === "unavailable" || error.reason === "rate_limited") {
          // Passing trouble on the server's side: ask again in a moment.
          setTimeout(() => {
            if (this.subscriptions.get(channel) === subscription && this.isOpen()) {
              this.sendSubscribe(channel, subscription);
            }
          }, TRANSIENT_RETRY_MS);
          return;
        }
        // Refused (forbidden, bad_request...): retrying can't help, forget it.
        this.subscriptions.delete(channel);
        settleWaiters(subscription, error);
      },
    );
  }

  private sendPublish(item: QueuedPublish): void {
    const frame: Record<string, unknown> = {
      type: "publish",
      channel: item.channel,
      data: item.data,
      idempotency_key: item.key,
    };
    if (item.event !== undefined) frame["event"] = item.event;
    this.request(frame).then(
      (reply) => item.resolve({ id: reply.type === "published" ? reply.id : "" }),
      (error: RealtimeError) => {
        if (error.reason === "lost" && !this.lifecycle.closed) {
          // Maybe stored, maybe not: the same key on the next connection settles it.
          this.queue.push(item);
        } else if (error.reason === "unavailable" && !this.lifecycle.closed) {
          setTimeout(() => this.retryPublish(item), TRANSIENT_RETRY_MS);
        } else {
          item.reject(error);
        }
      },
    );
  }

  private retryPublish(item: QueuedPublish): void {
    if (this.lifecycle.closed) item.reject(closedError());
    else if (this.isOpen()) this.sendPublish(item);
    else this.queue.push(item);
  }

  /** Send `frame` with a fresh `ref`; resolves with the server's answer to it. */
  private request(frame: Record<string, unknown>): Promise<Reply> {
    const ref = String(++this.nextRef);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(
          ref,
          undefined,
          new RealtimeError(`no answer to ${String(frame["type"])} within ${this.requestTimeout} ms`, {
            reason: "timeout",
          }),
        );
      }, this.requestTimeout);
      this.pending.set(ref, { resolve, reject, timer });
      if (!this.send({ ...frame, ref })) {
        this.settle(ref, undefined, new RealtimeError("not connected", { reason: "lost" }));
      }
    });
  }

  private settle(ref: string, reply?: Reply, error?: RealtimeError): void {
    const pending = this.pending.get(ref);
    if (!pending) return;
    this.pending.delete(ref);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else if (reply) pending.resolve(reply);
  }

  private send(frame: Record<string, unknown>): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  private isOpen(): boolean {
    return this.lifecycle.state === "open" && this.socket?.readyState === OPEN;
  }

  private silent(): void {
    const seconds = this.silenceMs / 1000;
    this.lifecycle.dropped(new RealtimeError(`no frame or ping for ${seconds} s`));
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer !== undefined) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    const expiry = this.token === undefined ? undefined : tokenExpiry(this.token);
    if (expiry === undefined) return; // not a JWT with `exp`: nothing to plan for
    const delay = renewalDelay(expiry);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      this.refreshToken().catch((e: unknown) => {
        if (!this.isOpen()) return;
        // The server will close at `exp` (1008, final): reconnect now with a fresh token instead.
        const detail = e instanceof Error ? e.message : String(e);
        this.lifecycle.dropped(new RealtimeError(`token refresh failed: ${detail}`));
      });
    }, delay);
  }

  private disconnect(): void {
    this.watchdog.stop();
    if (this.refreshTimer !== undefined) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1000, "client disconnect");
      } catch {
        // Already closed or never opened: nothing to tidy up.
      }
    }
    // Answers to requests sent on this connection will never come.
    for (const ref of [...this.pending.keys()]) {
      this.settle(
        ref,
        undefined,
        new RealtimeError("connection lost before the server answered", { reason: "lost" }),
      );
    }
    for (const subscription of this.subscriptions.values()) subscription.confirmed = false;
  }

  private rejectEverything(): void {
    const error = closedError();
    for (const item of this.queue) item.reject(error);
    this.queue = [];
    for (const subscription of this.subscriptions.values()) settleWaiters(subscription, error);
  }
}

/**
 * A fresh idempotency key: 32 hex digits from the platform's CSPRNG
 * (`getRandomValues`, unlike `randomUUID`, works on plain-http pages too).
 */
export function newIdempotencyKey(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `https://host/base` → `wss://host/base/ws` (relative URLs resolve against the page). */
export function webSocketUrl(base: string): string {
  const location = (globalThis as { location?: { href: string } }).location;
  const url = new URL(base, location?.href);
  url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/ws`;
  url.hash = "";
  return url.toString();
}

function serverError(frame: Extract<ServerFrame, { type: "error" }>): RealtimeError {
  const detail = frame.detail ? `: ${frame.detail}` : "";
  return new RealtimeError(`${frame.code}${detail}`, { reason: frame.code });
}

function closedError(): RealtimeError {
  return new RealtimeError("the client is closed", { fatal: true });
}

function settleWaiters(
  subscription: Subscription,
  error?: RealtimeError,
  value?: { recovered: boolean },
): void {
  const waiters = subscription.waiters;
  subscription.waiters = [];
  for (const waiter of waiters) {
    if (error) waiter.reject(error);
    else if (value) waiter.resolve(value);
  }
}
