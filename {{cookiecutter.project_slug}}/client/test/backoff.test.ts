import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Backoff } from "../src/backoff.js";

function delays(backoff: Backoff, n: number): number[] {
  return Array.from({ length: n }, () => backoff.next());
}

describe("Backoff", () => {
  it("doubles the ceiling each attempt up to the cap", () => {
    const top = new Backoff({ initialDelay: 100, maxDelay: 1000 }, () => 1);
    assert.deepEqual(delays(top, 6), [100, 200, 400, 800, 1000, 1000]);
  });

  it("draws full jitter: anywhere from zero to the ceiling", () => {
    const bottom = new Backoff({ initialDelay: 100, maxDelay: 1000 }, () => 0);
    assert.deepEqual(delays(bottom, 3), [0, 0, 0]);
    const middle = new Backoff({ initialDelay: 100, maxDelay: 1000 }, () => 0.5);
    assert.deepEqual(delays(middle, 5), [50, 100, 200, 400, 500]);
  });

  it("spreads real random delays within the bounds", () => {
    const backoff = new Backoff({ initialDelay: 100, maxDelay: 400 });
    const seen = Array.from({ length: 200 }, () => {
      backoff.reset();
      backoff.next();
      return backoff.next(); // second attempt: ceiling 200
    });
    assert.ok(seen.every((d) => d >= 0 && d <= 200));
    assert.ok(new Set(seen).size > 20, "delays should differ from client to client");
  });

  it("starts over after reset", () => {
    const backoff = new Backoff({ initialDelay: 100, maxDelay: 1000 }, () => 1);
    delays(backoff, 4);
    backoff.reset();
    assert.equal(backoff.next(), 100);
  });

  it("never overflows during a long outage", () => {
    const backoff = new Backoff({ initialDelay: 100, maxDelay: 1000 }, () => 1);
    assert.equal(delays(backoff, 5000).at(-1), 1000);
  });

  it("waits at least what the server asked for (retry:), jitter on top, even beyond the cap", () => {
    const backoff = new Backoff({ initialDelay: 100, maxDelay: 1000 }, () => 0.5);
    backoff.setServerDelay(3000);
    assert.deepEqual(delays(backoff, 2), [3050, 3100]);
    backoff.setServerDelay(undefined);
    assert.equal(backoff.next(), 200);
  });

  it("honours a floor for come-back-later closes", () => {
    const backoff = new Backoff({ initialDelay: 100, maxDelay: 1000 }, () => 0);
    assert.equal(backoff.next(700), 700);
    backoff.setServerDelay(900);
    assert.equal(backoff.next(700), 900);
  });
});
