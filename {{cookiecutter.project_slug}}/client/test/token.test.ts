import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { renewalDelay, tokenExpiry } from "../src/token.js";

/** An unsigned JWT with these claims (the clients never check signatures). */
function jwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2lnbmF0dXJl`;
}

describe("tokenExpiry", () => {
  it("reads exp from a JWT, in ms", () => {
    assert.equal(tokenExpiry(jwt({ sub: "a", exp: 1_900_000_000 })), 1_900_000_000_000);
  });

  it("is undefined for anything else", () => {
    assert.equal(tokenExpiry("opaque-token"), undefined);
    assert.equal(tokenExpiry(jwt({ sub: "no exp" })), undefined);
    assert.equal(tokenExpiry("a.%%%.c"), undefined);
  });
});

describe("renewalDelay", () => {
  it("renews with a fifth of the lifetime left, at most a minute ahead", () => {
    assert.equal(renewalDelay(10_000, 0), 8_000);
    assert.equal(renewalDelay(3_600_000, 0), 3_540_000);
  });

  it("renews at once when the token has (almost) expired", () => {
    assert.equal(renewalDelay(1_000, 5_000), 0);
  });
});
