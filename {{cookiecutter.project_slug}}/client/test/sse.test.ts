import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";

import { type RealtimeError, RealtimeSSEClient } from "../src/sse.js";
import { quietFor, waitFor } from "./helpers.js";

/** One request the client made, with a stream the test writes the server's side into. */
interface Call {
  url: string;
  headers: Record<string, string>;
  signal: AbortSignal;
  write(text: string): void;
  end(): void;
}

/** A `fetch` that answers each request with `respond(call)` (default: an open event stream). */
function fakeServer(respond?: (call: Call, n: number) => Response | undefined) {
  const calls: Call[] = [];
  const fetchImpl = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    const signal = init?.signal as AbortSignal;
    const call: Call = {
      url: String(input),
      headers: { ...(init?.headers as Record<string, string>) },
      signal,
      write: (text) => controller.enqueue(new TextEncoder().encode(text)),
      end: () => controller.close(),
    };
    calls.push(call);
    const custom = respond?.(call, calls.length);
    if (custom) return Promise.resolve(custom);
    return new Promise((resolve, reject) => {
      signal.addEventListener("abort", () => {
        reject(new DOMException("aborted", "AbortError"));
        try {
          controller.error(new DOMException("aborted", "AbortError"));
        } catch {
          // the stream was already closed
        }
      });
      resolve(new Response(body, { headers: { "Content-Type": "text/event-stream" } }));
    });
  };
  return { calls, fetch: fetchImpl as typeof fetch };
}

const clients: RealtimeSSEClient[] = [];

function client(
  server: ReturnType<typeof fakeServer>,
  extra: Partial<ConstructorParameters<typeof RealtimeSSEClient>[0]> = {},
) {
  let issued = 0;
  const c = new RealtimeSSEClient({
    url: "https://api.example.com/",
    channel: "room:1",
    getToken: () => `t${++issued}`,
    heartbeatInterval: 5,
    backoff: { initialDelay: 1, maxDelay: 5 },
    fetch: server.fetch,
    ...extra,
  });
  clients.push(c);
  return c;
}

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

describe("RealtimeSSEClient", () => {
  it("connects with the token in the Authorization header and delivers parsed events", async () => {
    const server = fakeServer();
    const c = client(server);
    const got: Array<[unknown, string, string]> = [];
    c.on("chat", (data, meta) => got.push([data, meta.id, meta.event]));
    await waitFor(() => server.calls.length === 1, "the request");
    const call = server.calls[0]!;
    assert.equal(call.url, "https://api.example.com/channels/room%3A1/events");
    assert.equal(call.headers["Authorization"], "Bearer t1");
    assert.equal(call.headers["Last-Event-ID"], undefined);
    call.write('retry: 1\n\nid: 1\nevent: chat\ndata: {"n":1}\n\n');
    await waitFor(() => got.length === 1, "the event");
    assert.deepEqual(got, [[{ n: 1 }, "1", "chat"]]);
    assert.equal(c.lastEventId, "1");
    assert.equal(c.state, "open");
  });

  it("keeps the path prefix of a base URL (a service mounted under /realtime)", async () => {
    const server = fakeServer();
    client(server, { url: "https://app.example.com/realtime/" });
    await waitFor(() => server.calls.length === 1, "the request");
    assert.equal(server.calls[0]!.url, "https://app.example.com/realtime/channels/room%3A1/events");
  });

  it("resumes with Last-Event-ID and a fresh token after the stream ends", async () => {
    const server = fakeServer();
    const c = client(server);
    const ids: string[] = [];
    c.on("*", (_data, meta) => ids.push(meta.id));
    await waitFor(() => server.calls.length === 1, "the request");
    server.calls[0]!.write("id: a\ndata: 1\n\nid: b\ndata: 2\n\n");
    await waitFor(() => ids.length === 2, "two events");
    server.calls[0]!.end();
    await waitFor(() => server.calls.length === 2, "the reconnect");
    const second = server.calls[1]!;
    assert.equal(second.headers["Last-Event-ID"], "b");
    assert.equal(second.headers["Authorization"], "Bearer t2");
    second.write("id: c\ndata: 3\n\n");
    await waitFor(() => ids.length === 3, "the third event");
    assert.deepEqual(ids, ["a", "b", "c"]);
  });

  it("starts from the lastEventId option", async () => {
    const server = fakeServer();
    client(server, { lastEventId: "41" });
    await waitFor(() => server.calls.length === 1, "the request");
    assert.equal(server.calls[0]!.headers["Last-Event-ID"], "41");
  });

  for (const status of [400, 401, 403, 404]) {
    it(`stops for good on HTTP ${status}: one attempt, a fatal error, state closed`, async () => {
      const server = fakeServer(() =>
        Response.json({ detail: "nope" }, { status, headers: { "Content-Type": "application/json" } }),
      );
      const c = client(server);
      const errors: RealtimeError[] = [];
      c.onError((e) => errors.push(e));
      await waitFor(() => errors.length === 1, "the error");
      assert.equal(errors[0]!.fatal, true);
      assert.equal(errors[0]!.status, status);
      assert.equal(errors[0]!.reason, "nope");
      assert.equal(c.state, "closed");
      await quietFor(50);
      assert.equal(server.calls.length, 1, "no retry");
    });
  }

  it("retries a 500 and a network failure", async () => {
    const server = fakeServer((_call, n) => {
      if (n === 1) return new Response("boom", { status: 500 });
      if (n === 2) throw new TypeError("Failed to fetch");
      return undefined;
    });
    const c = client(server);
    const errors: RealtimeError[] = [];
    c.onError((e) => errors.push(e));
    await waitFor(() => c.state === "open", "the third attempt to open");
    assert.equal(server.calls.length, 3);
    assert.equal(errors[0]!.status, 500);
    assert.ok(errors.every((e) => !e.fatal));
  });

  it("waits at least Retry-After before retrying a 503", async () => {
    const server = fakeServer((_call, n) =>
      n === 1 ? new Response("full", { status: 503, headers: { "Retry-After": "1" } }) : undefined,
    );
    const c = client(server);
    await waitFor(() => server.calls.length === 1, "the first attempt");
    await quietFor(300);
    assert.equal(server.calls.length, 1, "no retry before Retry-After");
    await waitFor(() => c.state === "open", "the retry after a second", 3000);
  });

  it("treats silence beyond twice the heartbeat interval as a dead connection", async () => {
    const server = fakeServer();
    const c = client(server, { heartbeatInterval: 0.05 });
    const errors: RealtimeError[] = [];
    c.onError((e) => errors.push(e));
    await waitFor(() => server.calls.length === 1, "the request");
    await waitFor(() => server.calls.length === 2, "a reconnect after silence");
    assert.ok(server.calls[0]!.signal.aborted, "the silent request was aborted");
    assert.match(errors[0]!.message, /no data or heartbeat/);
  });

  it("heartbeat comments keep the connection alive", async () => {
    const server = fakeServer();
    client(server, { heartbeatInterval: 0.05 });
    await waitFor(() => server.calls.length === 1, "the request");
    for (let i = 0; i < 10; i++) {
      server.calls[0]!.write(": ping\n");
      await quietFor(30);
    }
    assert.equal(server.calls.length, 1);
  });

  it("reports resync instead of delivering it as an event", async () => {
    const server = fakeServer();
    const c = client(server, { lastEventId: "old" });
    let resyncs = 0;
    const events: string[] = [];
    c.onResync(() => void (resyncs += 1));
    c.on("*", (_d, meta) => events.push(meta.event));
    await waitFor(() => server.calls.length === 1, "the request");
    server.calls[0]!.write("event: resync\ndata: {}\n\nid: 9\ndata: 1\n\n");
    await waitFor(() => events.length === 1, "the live event");
    assert.equal(resyncs, 1);
    assert.deepEqual(events, ["message"]);
    assert.equal(c.lastEventId, "9");
  });

  it("close() aborts the stream and never reconnects", async () => {
    const server = fakeServer();
    const c = client(server);
    const states: string[] = [];
    c.onState((s) => states.push(s));
    await waitFor(() => c.state === "open", "open");
    c.close();
    assert.ok(server.calls[0]!.signal.aborted);
    await quietFor(30);
    assert.equal(server.calls.length, 1);
    assert.deepEqual(states, ["open", "closed"]);
  });

  it("close() right after construction never connects", async () => {
    const server = fakeServer();
    const c = client(server);
    c.close();
    await quietFor(20);
    assert.equal(server.calls.length, 0);
    assert.equal(c.state, "closed");
  });

  it("a handler that throws does not stop the stream", async () => {
    const server = fakeServer();
    const c = client(server);
    const seen: unknown[] = [];
    c.on("message", () => {
      throw new Error("buggy handler");
    });
    c.on("message", (data) => seen.push(data));
    const original = console.error;
    console.error = () => undefined;
    try {
      await waitFor(() => server.calls.length === 1, "the request");
      server.calls[0]!.write("id: 1\ndata: 1\n\nid: 2\ndata: 2\n\n");
      await waitFor(() => seen.length === 2, "both events");
    } finally {
      console.error = original;
    }
  });

  it("reconnects with a fresh token shortly before the current one expires", async () => {
    const server = fakeServer();
    const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    let issued = 0;
    const getToken = () => {
      issued += 1;
      const exp = Math.floor(Date.now() / 1000) + 1;
      return `${part({ alg: "HS256" })}.${part({ sub: "a", n: issued, exp })}.sig`;
    };
    const c = client(server, { getToken });
    await waitFor(() => server.calls.length === 1, "the request");
    server.calls[0]!.write("id: 5\ndata: 1\n\n");
    await waitFor(() => c.lastEventId === "5", "the event");
    await waitFor(() => server.calls.length === 2, "the renewal", 3000);
    assert.ok(server.calls[0]!.signal.aborted, "the old stream was closed");
    assert.equal(server.calls[1]!.headers["Last-Event-ID"], "5");
    assert.notEqual(server.calls[1]!.headers["Authorization"], server.calls[0]!.headers["Authorization"]);
  });
});
