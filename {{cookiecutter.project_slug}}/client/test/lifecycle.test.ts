import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RealtimeError } from "../src/errors.js";
import { type ConnectionState, Lifecycle, type LifecycleOptions } from "../src/lifecycle.js";
import { quietFor, waitFor } from "./helpers.js";

/** A lifecycle over a fake transport that records what it was asked to do. */
function harness(options: Partial<LifecycleOptions> = {}) {
  const tokens: string[] = [];
  const states: ConnectionState[] = [];
  const errors: RealtimeError[] = [];
  let disconnects = 0;
  let issued = 0;
  const online = new EventTarget();
  const lifecycle = new Lifecycle(
    {
      connect: (token) => tokens.push(token),
      disconnect: () => void (disconnects += 1),
    },
    {
      getToken: () => `token-${++issued}`,
      backoff: { initialDelay: 5, maxDelay: 20 },
      stableAfter: 1000,
      onlineEvents: online,
      ...options,
    },
  );
  lifecycle.onState((s) => states.push(s));
  lifecycle.onError((e) => errors.push(e));
  return {
    lifecycle,
    tokens,
    states,
    errors,
    online,
    get disconnects() {
      return disconnects;
    },
  };
}

describe("Lifecycle", () => {
  it("asks for a fresh token on every attempt", async () => {
    const h = harness();
    h.lifecycle.start();
    await waitFor(() => h.tokens.length === 1, "first connect");
    h.lifecycle.opened();
    h.lifecycle.dropped(new RealtimeError("lost"));
    await waitFor(() => h.tokens.length === 2, "reconnect");
    assert.deepEqual(h.tokens, ["token-1", "token-2"]);
    assert.deepEqual(h.states, ["open", "reconnecting"]);
    assert.equal(h.errors.length, 1);
    assert.equal(h.errors[0]?.fatal, false);
    h.lifecycle.close();
  });

  it("keeps retrying while attempts fail, with backoff", async () => {
    const h = harness();
    h.lifecycle.start();
    for (let n = 1; n <= 5; n++) {
      await waitFor(() => h.tokens.length === n, `attempt ${n}`);
      h.lifecycle.dropped(new RealtimeError("refused"));
    }
    await waitFor(() => h.tokens.length === 6, "sixth attempt");
    assert.equal(h.lifecycle.state, "reconnecting");
    h.lifecycle.close();
  });

  it("stops for good on a fatal error: state closed, error fatal, no more attempts", async () => {
    const h = harness();
    h.lifecycle.start();
    await waitFor(() => h.tokens.length === 1, "first connect");
    h.lifecycle.failed(new RealtimeError("HTTP 401", { status: 401 }));
    assert.equal(h.lifecycle.state, "closed");
    assert.equal(h.errors.length, 1);
    assert.equal(h.errors[0]?.fatal, true);
    assert.equal(h.errors[0]?.status, 401);
    await quietFor(60);
    assert.equal(h.tokens.length, 1);
  });

  it("close() cancels a pending reconnect", async () => {
    const h = harness({ backoff: { initialDelay: 30, maxDelay: 30 }, random: () => 1 });
    h.lifecycle.start();
    await waitFor(() => h.tokens.length === 1, "first connect");
    h.lifecycle.dropped();
    h.lifecycle.close();
    await quietFor(80);
    assert.equal(h.tokens.length, 1);
    assert.equal(h.lifecycle.state, "closed");
    assert.ok(h.disconnects >= 1);
  });

  it("a token that arrives after close() is not used", async () => {
    let release: (token: string) => void = () => undefined;
    const h = harness({ getToken: () => new Promise<string>((resolve) => (release = resolve)) });
    h.lifecycle.start();
    h.lifecycle.close();
    release("late");
    await quietFor(10);
    assert.deepEqual(h.tokens, []);
  });

  it("reconnects at once when the browser comes back online", async () => {
    const h = harness({ backoff: { initialDelay: 60_000, maxDelay: 60_000 }, random: () => 1 });
    h.lifecycle.start();
    await waitFor(() => h.tokens.length === 1, "first connect");
    h.lifecycle.dropped(new RealtimeError("offline"));
    assert.equal(h.lifecycle.state, "reconnecting");
    h.online.dispatchEvent(new Event("online"));
    await waitFor(() => h.tokens.length === 2, "reconnect on online");
    h.lifecycle.close();
    h.online.dispatchEvent(new Event("online"));
    await quietFor(10);
    assert.equal(h.tokens.length, 2, "no attempt after close");
  });

  it("drops an open connection when the browser goes offline", async () => {
    const h = harness({ backoff: { initialDelay: 60_000, maxDelay: 60_000 } });
    h.lifecycle.start();
    await waitFor(() => h.tokens.length === 1, "first connect");
    h.lifecycle.opened();
    h.online.dispatchEvent(new Event("offline"));
    assert.equal(h.lifecycle.state, "reconnecting");
    assert.equal(h.disconnects, 1);
    assert.match(h.errors[0]?.message ?? "", /offline/);
    h.online.dispatchEvent(new Event("online"));
    await waitFor(() => h.tokens.length === 2, "reconnect on online");
    h.lifecycle.close();
  });

  it("retries when getToken() fails, reporting a non-fatal error", async () => {
    let calls = 0;
    const h = harness({
      getToken: () => {
        calls += 1;
        if (calls === 1) throw new Error("auth server down");
        return Promise.resolve("fine");
      },
    });
    h.lifecycle.start();
    await waitFor(() => h.tokens.length === 1, "connect with the second token");
    assert.deepEqual(h.tokens, ["fine"]);
    assert.match(h.errors[0]?.message ?? "", /auth server down/);
    h.lifecycle.close();
  });

  it("waits at least a second after a come-back-later close", async () => {
    const h = harness({ random: () => 0 });
    h.lifecycle.start();
    await waitFor(() => h.tokens.length === 1, "first connect");
    h.lifecycle.opened();
    h.lifecycle.dropped(new RealtimeError("1012"), { later: true });
    await quietFor(100);
    assert.equal(h.tokens.length, 1, "no instant reconnect");
    h.lifecycle.close();
  });

  it("an error handler that throws does not break the client", async () => {
    const h = harness();
    h.lifecycle.onError(() => {
      throw new Error("buggy handler");
    });
    const original = console.error;
    console.error = () => undefined;
    try {
      h.lifecycle.start();
      await waitFor(() => h.tokens.length === 1, "first connect");
      h.lifecycle.dropped(new RealtimeError("lost"));
      await waitFor(() => h.tokens.length === 2, "reconnect");
    } finally {
      console.error = original;
      h.lifecycle.close();
    }
  });
});
