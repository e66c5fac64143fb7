"""A small Server-Sent Events client on asyncio streams, for the SSE tests.

Plain asyncio streams rather than an HTTP library: a test can hold a thousand
of them cheaply, and it sees exactly what went over the wire (status, headers,
comment lines, and whether the stream ended cleanly or was cut off).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


@dataclass
class Frame:
    """One block of an event stream (the lines up to a blank line)."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def is_event(self) -> bool:
        """Whether the block dispatches an event (it has data)."""
        return self.data is not None

    def json(self) -> Any:
        """The event's data, decoded."""
        assert self.data is not None, f"not an event: {self}"
        return json.loads(self.data)


def parse_frame(block: str) -> Frame:
    """Parse one block of `field: value` lines and `:` comments."""
    frame = Frame()
    for line in block.split("\n"):
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            frame.id = value
        elif name == "event":
            frame.event = value
        elif name == "data":
            frame.data = value if frame.data is None else f"{frame.data}\n{value}"
        elif name == "retry":
            frame.retry = int(value)
    return frame


class SSEStream:
    """One `GET` request: its status, headers, and then its frames as they arrive."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""  # the whole body of a non-streaming (error) response
        self.ended = False  # the server finished the response (terminating chunk)
        self.cut_off = False  # the connection closed before the response was finished
        self._buffer = b""
        self._gunzip: Any = None  # a decompressor, once the body turns out to be gzipped

    async def _read_head(self) -> None:
        status_line = await self._reader.readline()
        self.status = int(status_line.split()[1])
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if "content-length" in self.headers:
            self.body = await self._reader.readexactly(int(self.headers["content-length"]))
            self.ended = True
        if self.headers.get("content-encoding") == "gzip":
            self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)

    async def _read_chunk(self) -> bytes:
        """The next chunk of a chunked body; b"" at its end (or when cut off)."""
        try:
            size = int((await self._reader.readline()).strip() or b"x", 16)
            if size == 0:
                await self._reader.readline()
                self.ended = True
                return b""
            chunk = await self._reader.readexactly(size + 2)
        except (asyncio.IncompleteReadError, ValueError, ConnectionError):
            self.cut_off = True
            return b""
        if self._gunzip is not None:
            return bytes(self._gunzip.decompress(chunk[:-2]))
        return chunk[:-2]

    async def next_frame(self, timeout: float | None = 5) -> Frame | None:
        """The next frame; None once the stream is over (`timeout=None`: however long it takes)."""
        async with asyncio.timeout(timeout):
            while b"\n\n" not in self._buffer:
                if self.ended or self.cut_off:
                    return None
                self._buffer += await self._read_chunk()
        block, _, self._buffer = self._buffer.partition(b"\n\n")
        return parse_frame(block.decode())

    async def next_event(self, timeout: float = 5) -> Frame:
        """The next frame that carries an event, skipping heartbeats and `retry:`."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next_frame(timeout)
                if frame is None:
                    raise EOFError("the stream ended")
                if frame.is_event:
                    return frame

    async def events(self, count: int, timeout: float = 10) -> list[Frame]:
        """The next `count` events."""
        async with asyncio.timeout(timeout):
            return [await self.next_event(timeout) for _ in range(count)]

    async def rest(self, timeout: float = 5) -> list[Frame]:
        """Every frame until the stream ends."""
        frames = []
        async with asyncio.timeout(timeout):
            while (frame := await self.next_frame(timeout)) is not None:
                frames.append(frame)
        return frames

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):  # the server may have reset it first
            await self._writer.wait_closed()


async def open_stream(
    port: int,
    channel: str,
    *,
    token: str | None = None,
    query_token: str | None = None,
    last_event_id: str | None = None,
    query: dict[str, str] | None = None,
    timeout: float = 5,
    prefix: str = "",
    host: str | None = None,
    gzip: bool = False,
    encoding: str = "utf-8",
) -> SSEStream:
    """`GET <prefix>/channels/<channel>/events` on 127.0.0.1:`port`; returns once the head is read.

    `gzip` accepts a gzipped body (and decodes it); `host` replaces the `Host` header.
    """
    params = dict(query or {})
    if query_token is not None:
        params["token"] = query_token
    path = f"{prefix}/channels/{channel}/events" + (f"?{urlencode(params)}" if params else "")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{port}'}",
        "Accept: text/event-stream",
    ]
    if gzip:
        lines.append("Accept-Encoding: gzip")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if last_event_id is not None:
        lines.append(f"Last-Event-ID: {last_event_id}")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stream = SSEStream(reader, writer)
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode(encoding))
        await stream._read_head()
    return stream
