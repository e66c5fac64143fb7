/**
 * An incremental parser for the `text/event-stream` format, as the WHATWG HTML
 * standard defines it: fields `data` (multi-line), `event`, `id`, `retry`;
 * comments; CRLF, LF or CR line ends; a leading BOM; input split anywhere,
 * even inside a line ending or a multi-byte character.
 */

/** One dispatched event. */
export interface SSEMessage {
  /** The last event id seen on the stream so far ("" when none). */
  id: string;
  /** The event type; "message" when the event had no `event:` field. */
  event: string;
  /** The data lines joined with "\n". */
  data: string;
}

export interface SSEHandlers {
  onMessage(message: SSEMessage): void;
  /** A `retry:` field: the reconnection delay the server asks for, in ms. */
  onRetry?(ms: number): void;
  /** A comment line (a heartbeat, for this service), without its leading ":". */
  onComment?(text: string): void;
}

export class SSEParser {
  private buffer = "";
  private started = false;
  // A CR ended the last chunk: an LF starting the next one belongs to the same line end.
  private afterCR = false;
  private data: string[] = [];
  private eventType = "";
  private lastId: string;
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true });

  constructor(
    private readonly handlers: SSEHandlers,
    lastEventId = "",
  ) {
    this.lastId = lastEventId;
  }

  /** The last event id buffer: the id the stream would resume from. */
  get lastEventId(): string {
    return this.lastId;
  }

  /** Feed raw bytes from the network. */
  pushBytes(chunk: Uint8Array): void {
    this.push(this.decoder.decode(chunk, { stream: true }));
  }

  /** Feed decoded text. */
  push(text: string): void {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.afterCR && text.startsWith("\n")) text = text.slice(1);
    this.afterCR = false;
    this.buffer += text;
    let start = 0;
    // Next CR / LF at or after `start`; -1 once there is none (searched again only when passed).
    let cr = -2;
    let lf = -2;
    for (;;) {
      if (cr !== -1 && cr < start) cr = this.buffer.indexOf("\r", start);
      if (lf !== -1 && lf < start) lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      const line = this.buffer.slice(start, end);
      if (end === cr) {
        if (end + 1 === this.buffer.length) {
          this.afterCR = true;
          start = end + 1;
        } else {
          start = this.buffer.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
        }
      } else {
        start = end + 1;
      }
      this.processLine(line);
    }
    this.buffer = this.buffer.slice(start);
  }

  private processLine(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) {
      this.handlers.onComment?.(line.slice(1));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.eventType = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.handlers.onRetry?.(Number(value));
        break;
      default:
        // Unknown fields are ignored, as the standard says.
        break;
    }
  }

  private dispatch(): void {
    if (this.data.length === 0) {
      this.eventType = "";
      return;
    }
    const message: SSEMessage = {
      id: this.lastId,
      event: this.eventType || "message",
      data: this.data.join("\n"),
    };
    this.data = [];
    this.eventType = "";
    this.handlers.onMessage(message);
  }
}
