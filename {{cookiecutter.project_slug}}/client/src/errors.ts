/** What went wrong with a realtime connection, and whether the client will try again. */
export class RealtimeError extends Error {
  /** True when the client has given up: it is now "closed" and will not reconnect. */
  readonly fatal: boolean;
  /** The HTTP status of a refused request (SSE), when there was one. */
  readonly status?: number;
  /** The WebSocket close code, when the server closed the socket. */
  readonly closeCode?: number;
  /** The server's reason: a close reason, an error detail or an error code. */
  readonly reason?: string;

  constructor(
    message: string,
    details: { fatal?: boolean; status?: number; closeCode?: number; reason?: string } = {},
  ) {
    super(message);
    this.name = "RealtimeError";
    this.fatal = details.fatal ?? false;
    // Only set what is known, so `"status" in error` means something.
    if (details.status !== undefined) this.status = details.status;
    if (details.closeCode !== undefined) this.closeCode = details.closeCode;
    if (details.reason !== undefined) this.reason = details.reason;
  }
}

/** Hand an exception thrown by user code to the host, without breaking the client's loop. */
export function reportHandlerError(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else console.error(error);
}
