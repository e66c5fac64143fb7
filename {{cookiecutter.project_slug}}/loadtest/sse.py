"""SSE subscribers: `GET /channels/<channel>/events` on a raw connection.

The response is chunked HTTP/1.1; `ChunkedDecoder` turns it into the event
stream and `EventStreamParser` into events, both incrementally, whatever
the socket's reads split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .http import ChunkedDecoder, LoadTestError, ResponseHead, describe_refusal
from .subscriber import Subscriber

NAME = "sse"


class EventStreamParser:
    """The `text/event-stream` format, fed in arbitrary pieces.

    Calls `on_event(data)` for each dispatched event and `on_comment()` for each
    comment line (the service's heartbeats). Lines may end in LF, CRLF or CR.
    """

    __slots__ = ("_data", "_on_comment", "_on_event", "_partial", "_pending_cr")

    def __init__(self, on_event: Callable[[bytes], None], on_comment: Callable[[], None]) -> None:
        self._on_event = on_event
        self._on_comment = on_comment
        self._partial = b""  # an unfinished line
        self._data: list[bytes] = []  # `data:` lines of the event being read
        self._pending_cr = False  # the last piece ended in CR: an LF next belongs to it

    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the stream."""
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._pending_cr = False
        if b"\r" in chunk:
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = (self._partial + chunk).split(b"\n") if self._partial else chunk.split(b"\n")
        self._partial = lines.pop()
        data = self._data
        for line in lines:
            if not line:
                if data:
                    self._on_event(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b":"):
                self._on_comment()
            # `id:`, `event:` and `retry:` lines don't matter to the load test.


class SSESubscriber(Subscriber):
    """One event stream."""

    name = NAME

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._head = bytearray()
        self._status: ResponseHead | None = None
        self._error_body = bytearray()
        self._chunks: ChunkedDecoder | None = None
        self._now = 0.0  # when the bytes being parsed arrived
        self._parser = EventStreamParser(self._event, self._comment)

    def start(self) -> None:
        request = (
            f"GET {self.target.events_path(self.channel)} HTTP/1.1\r\n"
            f"Host: {self.target.authority}\r\n"
            f"Authorization: Bearer {self.token}\r\n"
            "Accept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        )
        assert self.transport is not None
        self.transport.write(request.encode())

    def received(self, data: bytes, now: float) -> None:
        self._now = now
        if self._chunks is None:
            data = self._read_head(data)
            if self._chunks is None:
                return
        try:
            body = self._chunks.feed(data)
        except LoadTestError as exc:
            self.fail(str(exc))
            self.close()
            return
        if body:
            self._parser.feed(body)
        if self._chunks.finished:
            self.fail("the service ended the stream")

    def _read_head(self, data: bytes) -> bytes:
        """Collect the response head; the rest of `data` once the stream has begun."""
        if self._status is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return b""
            try:
                self._status = ResponseHead.parse(bytes(self._head[:end]))
            except LoadTestError as exc:
                self.fail(str(exc))
                return b""
            data = bytes(self._head[end + 4 :])
            self._head.clear()
        status = self._status
        if status.status == 200 and status.chunked:
            self._chunks = ChunkedDecoder()
            self.ready()  # the service subscribes before it answers
            return data
        if status.status == 200:
            self.fail("the event stream is not chunked HTTP/1.1")
            return b""
        # A refusal: wait for its (short) JSON body to say why.
        self._error_body += data
        length = status.content_length
        if length is None or len(self._error_body) >= length:
            self.fail(describe_refusal(status.status, bytes(self._error_body)))
        return b""

    def _event(self, data: bytes) -> None:
        self.tally.record_json(self.index, data, self._now)

    def _comment(self) -> None:
        self.heartbeat(self._now)
