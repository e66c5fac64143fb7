"""The publisher: `POST /channels/<channel>/events` over one keep-alive connection.

One connection, one request at a time: the service stores events in the order
their publishes arrive, so publishing sequentially is what makes "in publish
order" checkable by the subscribers.
"""

from __future__ import annotations

import asyncio
import socket

from .http import LoadTestError, ResponseHead, Target, describe_refusal

PUBLISH_TIMEOUT = 10.0


class Publisher:
    """Publishes events with one token over a reused HTTP/1.1 connection."""

    def __init__(self, target: Target, token: str, channel: str, event_name: str) -> None:
        self._target = target
        self._event_name = event_name.encode()
        self._head = (
            f"POST {target.events_path(channel)} HTTP/1.1\r\n"
            f"Host: {target.authority}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: "
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def publish(self, data: bytes) -> None:
        """Publish one event carrying `data` (JSON); `LoadTestError` unless it is accepted."""
        body = b'{"event":"%s","data":%s}' % (self._event_name, data)
        request = self._head + b"%d\r\n\r\n" % len(body) + body
        for attempt in (1, 2):
            reused = self._writer is not None
            reader, writer = await self._connection()
            writer.write(request)
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    head, response = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self.close()
                # The service may close an idle keep-alive connection just as we
                # reuse it; that one deserves a second try on a fresh one.
                if reused and attempt == 1:
                    continue
                raise LoadTestError(f"publish failed: the connection broke ({exc!r})") from None
            except TimeoutError:
                self.close()
                raise LoadTestError(
                    f"publish failed: no answer within {PUBLISH_TIMEOUT:g} s"
                ) from None
            if head.headers.get("connection", "").lower() == "close":
                self.close()
            if head.status // 100 != 2:
                raise LoadTestError("publish refused: " + describe_refusal(head.status, response))
            return

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            target = self._target
            try:
                reader, writer = await asyncio.open_connection(
                    target.host, target.port, ssl=target.ssl_context()
                )
            except OSError as exc:
                raise LoadTestError(f"can't connect to {target.url}: {exc}") from None
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # Each publish is one small write: send it now, not held back by Nagle's
                # algorithm until the previous one is acknowledged.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._reader, self._writer = reader, writer
        return self._reader, self._writer

    def close(self) -> None:
        """Close the connection (the next publish opens a new one)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _read_response(reader: asyncio.StreamReader) -> tuple[ResponseHead, bytes]:
    head = ResponseHead.parse((await reader.readuntil(b"\r\n\r\n"))[:-4])
    length = head.content_length
    if length is not None:
        return head, await reader.readexactly(length)
    if not head.chunked:
        return head, b""
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append((await reader.readexactly(size + 2))[:-2])
    await reader.readuntil(b"\r\n")
    return head, b"".join(parts)
