"""Just enough HTTP/1.1 for the load test: the target URL, response heads, chunked bodies.

Hand-written rather than an HTTP library so that thousands of subscribers cost
one small object each, with no task and no buffering layer of their own.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from urllib.parse import quote, urlsplit


class LoadTestError(Exception):
    """The run can't go on; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the service listens: `http(s)://host[:port][/prefix]`."""

    host: str
    port: int
    secure: bool
    prefix: str  # a path the service is mounted under, without the trailing slash

    @classmethod
    def parse(cls, url: str) -> Target:
        """Parse the `--url` option; `LoadTestError` if it isn't an http(s) URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoadTestError(f"--url must look like http://host:port, not {url!r}")
        secure = parts.scheme == "https"
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            raise LoadTestError(f"--url has an invalid port: {url!r}") from None
        return cls(parts.hostname, port, secure, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        """The `Host` header."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL, normalised."""
        return f"{'https' if self.secure else 'http'}://{self.authority}{self.prefix}"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint."""
        return f"{'wss' if self.secure else 'ws'}://{self.authority}{self.prefix}/ws"

    def events_path(self, channel: str) -> str:
        """`/channels/<channel>/events`, under the prefix."""
        return f"{self.prefix}/channels/{quote(channel, safe='')}/events"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context for https, else None."""
        return ssl.create_default_context() if self.secure else None


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A response's status line and headers (names lowercased)."""

    status: int
    reason: str
    headers: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes) -> ResponseHead:
        """Parse the bytes before the blank line; `LoadTestError` if it isn't HTTP."""
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit():
            raise LoadTestError(f"not an HTTP response: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return cls(int(code), reason, headers)

    @property
    def chunked(self) -> bool:
        """Whether the body uses chunked transfer encoding."""
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def content_length(self) -> int | None:
        """The declared body length, if any."""
        value = self.headers.get("content-length", "")
        return int(value) if value.isdigit() else None


def describe_refusal(status: int, body: bytes) -> str:
    """`HTTP 401: <detail>` from a JSON error body (or its first bytes)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and "detail" in decoded:
        text = str(decoded["detail"])
    return f"HTTP {status}: {text[:200]}" if text else f"HTTP {status}"


class ChunkedDecoder:
    """Incremental `Transfer-Encoding: chunked` decoding, fed whatever the socket gives."""

    __slots__ = ("_buffer", "_left", "finished")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._left = 0  # bytes of the current chunk still to come, then its CRLF
        self.finished = False  # the last (empty) chunk arrived

    def feed(self, data: bytes) -> bytes:
        """The body bytes contained in `data` (possibly none yet)."""
        if self._left > len(data) + 2 and not self._buffer:
            # The common case of a big chunk arriving in pieces: no copying.
            self._left -= len(data)
            return data
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        while buffer and not self.finished:
            if self._left:
                if self._left <= 2:  # only the CRLF after the data is left
                    if len(buffer) < self._left:
                        break
                    del buffer[: self._left]
                    self._left = 0
                    continue
                take = min(self._left - 2, len(buffer))
                out.append(bytes(buffer[:take]))
                del buffer[:take]
                self._left -= take
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > 1024:
                    raise LoadTestError("malformed chunked body")
                break
            size_field = bytes(buffer[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise LoadTestError(f"malformed chunk size {size_field[:20]!r}") from None
            del buffer[: end + 2]
            if size == 0:
                self.finished = True
            else:
                self._left = size + 2
        return b"".join(out)
