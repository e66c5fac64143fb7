import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";

import {
  type RealtimeError,
  RealtimeWebSocketClient,
  type SocketLike,
  webSocketUrl,
} from "../src/websocket.js";
import { tokenExpiry } from "../src/token.js";
import { quietFor, waitFor } from "./helpers.js";

/** The server's end of one fake socket: what the client sent, and ways to answer. */
class FakeSocket implements SocketLike {
  readyState = 0;
  sent: Array<Record<string, unknown>> = [];
  closedWith: number | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code = 1000): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  frame(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** The frames of `type` the client sent. */
  sentOf(type: string): Array<Record<string, unknown>> {
    return this.sent.filter((f) => f["type"] === type);
  }

  /** Answer every subscribe not answered yet, as the server would. */
  confirmSubscribes(recovered = true): void {
    for (const f of this.sentOf("subscribe")) {
      if (f["answered"]) continue;
      f["answered"] = true;
      this.frame({ type: "subscribed", channel: f["channel"], recovered, ref: f["ref"] });
    }
  }
}

const clients: RealtimeWebSocketClient[] = [];

function setup(extra: Partial<ConstructorParameters<typeof RealtimeWebSocketClient>[0]> = {}) {
  const sockets: FakeSocket[] = [];
  let issued = 0;
  const client = new RealtimeWebSocketClient({
    url: "https://api.example.com/base/",
    getToken: () => `t${++issued}`,
    heartbeatInterval: 5,
    backoff: { initialDelay: 1, maxDelay: 5 },
    requestTimeout: 500,
    createWebSocket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    ...extra,
  });
  clients.push(client);
  const errors: RealtimeError[] = [];
  client.onError((e) => errors.push(e));
  const last = () => sockets[sockets.length - 1]!;
  return { client, sockets, errors, last };
}

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

describe("webSocketUrl", () => {
  it("derives ws(s)://…/ws from the base URL", () => {
    assert.equal(webSocketUrl("https://api.example.com"), "wss://api.example.com/ws");
    assert.equal(webSocketUrl("http://localhost:8000/base/"), "ws://localhost:8000/base/ws");
  });
});

/** An unsigned JWT with these claims (the client never checks signatures). */
function jwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2lnbmF0dXJl`;
}

describe("RealtimeWebSocketClient", () => {
  it("connects with the token in the query and resolves subscribe on `subscribed`", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    assert.equal(last().url, "wss://api.example.com/base/ws?token=t1");
    last().open();
    const subscribed = client.subscribe("room:1", () => undefined);
    await waitFor(() => last().sentOf("subscribe").length === 1, "the subscribe frame");
    const frame = last().sentOf("subscribe")[0]!;
    assert.equal(frame["channel"], "room:1");
    assert.equal(typeof frame["ref"], "string");
    assert.equal("last_event_id" in frame, false);
    last().confirmSubscribes();
    assert.deepEqual(await subscribed, { recovered: true });
    assert.equal(client.state, "open");
  });

  it("delivers messages to the channel's handler with their meta", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const got: Array<[unknown, unknown]> = [];
    const subscribed = client.subscribe("a", (data, meta) => got.push([data, meta]));
    last().frame({ type: "message", channel: "a", id: "1", event: "chat", data: { x: 1 } });
    last().frame({ type: "message", channel: "other", id: "2", event: "chat", data: 2 });
    last().confirmSubscribes();
    await subscribed;
    assert.deepEqual(got, [[{ x: 1 }, { id: "1", event: "chat", channel: "a" }]]);
  });

  it("answers the server's pings", async () => {
    const { sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    last().frame({ type: "ping" });
    assert.deepEqual(last().sentOf("pong"), [{ type: "pong" }]);
  });

  it("re-subscribes every channel with its last id after a reconnect, with a fresh token", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const a = client.subscribe("a", () => undefined);
    const b = client.subscribe("b", () => undefined, { lastEventId: "b-5" });
    last().confirmSubscribes();
    await Promise.all([a, b]);
    last().frame({ type: "message", channel: "a", id: "a-7", event: "message", data: null });
    last().serverClose(1006);
    await waitFor(() => sockets.length === 2, "the reconnect");
    assert.equal(last().url, "wss://api.example.com/base/ws?token=t2");
    last().open();
    const again = last().sentOf("subscribe").map((f) => [f["channel"], f["last_event_id"]]);
    assert.deepEqual(again, [
      ["a", "a-7"],
      ["b", "b-5"],
    ]);
  });

  it("reports a resync when a subscription can't be recovered", async () => {
    const { client, sockets, last } = setup();
    const resyncs: string[] = [];
    client.onResync((channel) => resyncs.push(channel));
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const subscribed = client.subscribe("a", () => undefined, { lastEventId: "gone" });
    last().confirmSubscribes(false);
    assert.deepEqual(await subscribed, { recovered: false });
    assert.deepEqual(resyncs, ["a"]);
  });

  it("queues publishes while offline (bounded) and sends them on reconnect", async () => {
    const { client, sockets, last } = setup({ maxQueuedPublishes: 2 });
    await waitFor(() => sockets.length === 1, "the socket");
    const first = client.publish("a", { n: 1 }, "chat");
    const second = client.publish("a", { n: 2 });
    await assert.rejects(client.publish("a", { n: 3 }), /publish queue full/);
    assert.deepEqual(last().sentOf("publish"), []);
    last().open();
    const publishes = last().sentOf("publish");
    assert.deepEqual(
      publishes.map((f) => [f["data"], f["event"]]),
      [
        [{ n: 1 }, "chat"],
        [{ n: 2 }, undefined],
      ],
    );
    for (const [i, f] of publishes.entries()) {
      last().frame({ type: "published", channel: "a", id: `id-${i}`, ref: f["ref"] });
    }
    assert.deepEqual(await Promise.all([first, second]), [{ id: "id-0" }, { id: "id-1" }]);
  });

  it("sends an idempotency key with every publish, a new one per publish", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    client.publish("a", 1).catch(() => {});
    last().open();
    client.publish("a", 2).catch(() => {});
    const keys = last().sentOf("publish").map((f) => f["idempotency_key"]);
    assert.equal(keys.length, 2);
    for (const key of keys) assert.match(String(key), /^[0-9a-f]{32}$/);
    assert.notEqual(keys[0], keys[1]);
  });

  it("resends a publish whose answer was lost, with the same key, on the next connection", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const published = client.publish("a", { n: 1 });
    const sent = last().sentOf("publish")[0]!;
    last().serverClose(1012, "server restarting");
    await waitFor(() => sockets.length === 2, "the reconnect", 3000);
    last().open();
    const resent = last().sentOf("publish")[0]!;
    assert.equal(resent["idempotency_key"], sent["idempotency_key"]);
    assert.deepEqual(resent["data"], { n: 1 });
    last().frame({ type: "published", channel: "a", id: "first-id", ref: resent["ref"] });
    assert.deepEqual(await published, { id: "first-id" });
  });

  it("retries a publish answered `unavailable`, with the same key", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const published = client.publish("a", 1);
    const first = last().sentOf("publish")[0]!;
    last().frame({ type: "error", code: "unavailable", detail: "redis down", ref: first["ref"] });
    await waitFor(() => last().sentOf("publish").length === 2, "the retry", 3000);
    const retry = last().sentOf("publish")[1]!;
    assert.equal(retry["idempotency_key"], first["idempotency_key"]);
    last().frame({ type: "published", channel: "a", id: "id-1", ref: retry["ref"] });
    assert.deepEqual(await published, { id: "id-1" });
  });

  it("calls onResync when the server reports lost continuity on a live subscription", async () => {
    const { client, sockets, last } = setup();
    const resyncs: string[] = [];
    client.onResync((channel) => resyncs.push(channel));
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const subscribed = client.subscribe("a", () => {});
    last().confirmSubscribes();
    await subscribed;
    last().frame({ type: "subscribed", channel: "a", recovered: false });
    last().frame({ type: "subscribed", channel: "not-mine", recovered: false });
    assert.deepEqual(resyncs, ["a"]);
  });

  it("forgets a subscription the server revoked, reporting why", async () => {
    const { client, sockets, errors, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const received: unknown[] = [];
    const subscribed = client.subscribe("a", (data) => received.push(data));
    last().confirmSubscribes();
    await subscribed;
    last().frame({ type: "unsubscribed", channel: "a", reason: "not allowed any more" });
    last().frame({ type: "message", channel: "a", id: "1", event: "message", data: 1 });
    assert.deepEqual(received, []);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /unsubscribed from a: not allowed any more/);
    assert.equal(errors[0]!.fatal, false);
    assert.equal(client.state, "open");
  });

  it("rejects a publish the server refused, keeping the connection", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const refused = client.publish("secret", 1);
    const ref = last().sentOf("publish")[0]!["ref"];
    last().frame({ type: "error", code: "forbidden", detail: "no", ref });
    await assert.rejects(refused, (e: RealtimeError) => e.reason === "forbidden" && !e.fatal);
    assert.equal(client.state, "open");
  });

  it("rejects a request the server never answers, after the timeout", async () => {
    const { client, sockets, last } = setup({ requestTimeout: 30 });
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    await assert.rejects(client.publish("a", 1), /no answer to publish within 30 ms/);
  });

  it("never retries after 1008: a fatal error carrying the reason, state closed", async () => {
    const { client, sockets, errors, last } = setup();
    const pending = client.publish("a", 1);
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    last().serverClose(1008, "invalid token: Signature verification failed");
    assert.equal(client.state, "closed");
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.fatal, true);
    assert.equal(errors[0]!.closeCode, 1008);
    assert.match(errors[0]!.reason ?? "", /invalid token/);
    await assert.rejects(pending);
    await quietFor(40);
    assert.equal(sockets.length, 1, "no second attempt");
  });

  for (const code of [1001, 1012, 1013]) {
    it(`comes back later after ${code}, not at once`, async () => {
      const { client, sockets, errors, last } = setup({ backoff: { initialDelay: 1, maxDelay: 1 } });
      await waitFor(() => sockets.length === 1, "the socket");
      last().open();
      last().serverClose(code, "going away");
      assert.equal(client.state, "reconnecting");
      assert.equal(errors[0]!.fatal, false);
      await quietFor(100);
      assert.equal(sockets.length, 1, "waits rather than reconnecting at once");
      if (code === 1012) await waitFor(() => sockets.length === 2, "the later reconnect", 3000);
    });
  }

  it("treats silence beyond twice the heartbeat interval as a dead connection", async () => {
    const { sockets, errors, last } = setup({ heartbeatInterval: 0.05 });
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const first = last();
    await waitFor(() => sockets.length === 2, "a reconnect after silence");
    assert.equal(first.closedWith, 1000);
    assert.match(errors[0]!.message, /no frame or ping/);
  });

  it("pings keep the connection alive", async () => {
    const { sockets, last } = setup({ heartbeatInterval: 0.05 });
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    for (let i = 0; i < 10; i++) {
      last().frame({ type: "ping" });
      await quietFor(30);
    }
    assert.equal(sockets.length, 1);
  });

  it("unsubscribe stops delivery at once and is confirmed by the server", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const got: unknown[] = [];
    const subscribed = client.subscribe("a", (data) => got.push(data));
    last().confirmSubscribes();
    await subscribed;
    const done = client.unsubscribe("a");
    last().frame({ type: "message", channel: "a", id: "1", event: "message", data: 1 });
    const frame = last().sentOf("unsubscribe")[0]!;
    last().frame({ type: "unsubscribed", channel: "a", ref: frame["ref"] });
    await done;
    assert.deepEqual(got, []);
  });

  it("close() closes the socket, rejects queued publishes and never reconnects", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    const queued = client.publish("a", 1);
    client.close();
    await assert.rejects(queued, /closed/);
    assert.equal(last().closedWith, 1000);
    await quietFor(30);
    assert.equal(sockets.length, 1);
    await assert.rejects(client.subscribe("a", () => undefined), /closed/);
  });

  it("refreshToken() sends the new token and resolves on `refreshed`", async () => {
    const { client, sockets, last } = setup();
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    const refreshed = client.refreshToken();
    await waitFor(() => last().sentOf("refresh").length === 1, "the refresh frame");
    const frame = last().sentOf("refresh")[0]!;
    assert.equal(frame["token"], "t2");
    last().frame({ type: "refreshed", ref: frame["ref"] });
    await refreshed;
  });

  it("refreshes the token by itself before it expires", async () => {
    const expiring = () => jwt({ sub: "a", exp: Math.floor(Date.now() / 1000) + 1 });
    const { client, sockets, last } = setup({ getToken: expiring });
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    await waitFor(() => last().sentOf("refresh").length === 1, "the refresh frame", 3000);
    const frame = last().sentOf("refresh")[0]!;
    assert.equal(tokenExpiry(frame["token"] as string) !== undefined, true);
    last().frame({ type: "refreshed", ref: frame["ref"] });
    assert.equal(client.state, "open");
  });

  it("reconnects with a fresh token when the server refuses the refresh", async () => {
    const expiring = () => jwt({ sub: "a", exp: Math.floor(Date.now() / 1000) + 1 });
    const { sockets, last } = setup({ getToken: expiring });
    await waitFor(() => sockets.length === 1, "the socket");
    last().open();
    await waitFor(() => last().sentOf("refresh").length === 1, "the refresh frame", 3000);
    const ref = last().sentOf("refresh")[0]!["ref"];
    last().frame({ type: "error", code: "forbidden", detail: "other sub", ref });
    await waitFor(() => sockets.length === 2, "the reconnect");
  });
});
