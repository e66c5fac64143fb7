/** What the clients read from a token: only its expiry, to renew it in time. */

/** When a JWT expires (ms since the epoch), read from its `exp` claim; undefined if unknown. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "="))) as {
      exp?: unknown;
    };
    return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** When to renew a token that expires at `expiry` (ms since the epoch): ms from now. */
export function renewalDelay(expiry: number, now = Date.now()): number {
  const left = expiry - now;
  // With a fifth of the lifetime left, at most a minute ahead.
  return Math.max(0, left - Math.min(60_000, left / 5));
}
