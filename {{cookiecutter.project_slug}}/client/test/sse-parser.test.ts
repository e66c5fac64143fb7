import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { type SSEMessage, SSEParser } from "../src/sse-parser.js";

interface Parsed {
  messages: SSEMessage[];
  retries: number[];
  comments: string[];
}

function parse(chunks: Array<string | Uint8Array>, lastEventId = ""): Parsed {
  const out: Parsed = { messages: [], retries: [], comments: [] };
  const parser = new SSEParser(
    {
      onMessage: (m) => out.messages.push(m),
      onRetry: (ms) => out.retries.push(ms),
      onComment: (text) => out.comments.push(text),
    },
    lastEventId,
  );
  for (const chunk of chunks) {
    if (typeof chunk === "string") parser.push(chunk);
    else parser.pushBytes(chunk);
  }
  return out;
}

const STREAM =
  "\uFEFFretry: 2500\r\n" +
  ": heartbeat\r\n" +
  "id: 1-0\r\nevent: chat\r\ndata: {\"text\":\"h\u00e9llo \u2603\"}\r\n\r\n" +
  "data: line one\rdata: line two\r\r" +
  "id: 3-0\nevent: resync\ndata: {}\n\n";

const EXPECTED: SSEMessage[] = [
  { id: "1-0", event: "chat", data: '{"text":"h\u00e9llo \u2603"}' },
  { id: "1-0", event: "message", data: "line one\nline two" },
  { id: "3-0", event: "resync", data: "{}" },
];

describe("SSEParser", () => {
  it("parses id, event, multi-line data, retry and comments across CRLF, CR and LF", () => {
    const out = parse([STREAM]);
    assert.deepEqual(out.messages, EXPECTED);
    assert.deepEqual(out.retries, [2500]);
    assert.deepEqual(out.comments, [" heartbeat"]);
  });

  it("gives the same events however the text is split in two", () => {
    for (let i = 0; i <= STREAM.length; i++) {
      const out = parse([STREAM.slice(0, i), STREAM.slice(i)]);
      assert.deepEqual(out.messages, EXPECTED, `split at ${i}`);
      assert.deepEqual(out.retries, [2500], `split at ${i}`);
    }
  });

  it("gives the same events when bytes arrive one at a time, mid-character too", () => {
    const bytes = new TextEncoder().encode(STREAM);
    const chunks = Array.from(bytes, (b) => Uint8Array.of(b));
    assert.deepEqual(parse(chunks).messages, EXPECTED);
  });

  it("gives the same events for every split of the bytes into three chunks", () => {
    const bytes = new TextEncoder().encode(STREAM);
    for (let i = 0; i < bytes.length; i += 3) {
      for (let j = i; j < bytes.length; j += 5) {
        const out = parse([bytes.slice(0, i), bytes.slice(i, j), bytes.slice(j)]);
        assert.deepEqual(out.messages, EXPECTED, `split at ${i}, ${j}`);
      }
    }
  });

  it("treats CRLF split between chunks as one line end", () => {
    const out = parse(["data: a\r", "\n", "\r", "\ndata: b\n\n"]);
    assert.deepEqual(
      out.messages.map((m) => m.data),
      ["a", "b"],
    );
  });

  it("strips only a leading BOM", () => {
    const out = parse(["\uFEFFdata: x\n\n", "data: \uFEFFy\n\n"]);
    assert.deepEqual(
      out.messages.map((m) => m.data),
      ["x", "\uFEFFy"],
    );
  });

  it("removes one space after the colon, keeps the rest, accepts no colon", () => {
    const out = parse(["data:no space\ndata:  two spaces\ndata\n\n"]);
    assert.equal(out.messages[0]?.data, "no space\n two spaces\n");
  });

  it("dispatches nothing for a block without data, but remembers its id", () => {
    const out = parse(["id: 7\nevent: ignored\n\ndata: after\n\n"]);
    assert.deepEqual(out.messages, [{ id: "7", event: "message", data: "after" }]);
  });

  it("keeps the last id for later events and starts from the one given", () => {
    const out = parse(["data: a\n\nid: 9\ndata: b\n\ndata: c\n\nid\ndata: d\n\n"], "5");
    assert.deepEqual(
      out.messages.map((m) => m.id),
      ["5", "9", "9", ""],
    );
  });

  it("ignores an id containing NUL, a non-numeric retry and unknown fields", () => {
    const out = parse(["id: 1\nretry: 10x\nfoo: bar\ndata: a\n\nid: 2\0\ndata: b\n\n"]);
    assert.deepEqual(
      out.messages.map((m) => m.id),
      ["1", "1"],
    );
    assert.deepEqual(out.retries, []);
  });

  it("drops an event the stream ended before finishing", () => {
    const out = parse(["data: complete\n\ndata: cut off\n"]);
    assert.deepEqual(
      out.messages.map((m) => m.data),
      ["complete"],
    );
  });
});
