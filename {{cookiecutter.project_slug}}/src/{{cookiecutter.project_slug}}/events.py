"""The event: what a publish creates, and its wire encodings, computed once."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_EVENT_NAME = "message"


def encode_json(value: Any) -> bytes:
    """Compact JSON, UTF-8, never split over lines (SSE `data:` needs one line).

    `NaN` and `Infinity` are a `ValueError`: they aren't JSON.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode_json(raw: str | bytes) -> Any:
    """Parse JSON from a client; `ValueError` for anything that isn't strict JSON.

    `NaN` and `Infinity` are refused (they would be re-encoded as invalid JSON for
    every subscriber) and absurdly deep nesting is a `ValueError`, not a crash.
    """
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class Event:
    """One published event.

    Every subscriber of a process shares the same `Event`, so the SSE frame and the
    WebSocket text are encoded once per process, on first use, not once per client.
    """

    __slots__ = ("_sse", "_ws", "channel", "data", "id", "name")

    def __init__(self, channel: str, id: str, name: str, data: bytes) -> None:
        self.channel = channel
        self.id = id
        self.name = name
        self.data = data  # the published `data` as compact JSON
        self._sse: bytes | None = None
        self._ws: str | None = None

    def __repr__(self) -> str:
        return f"Event(channel={self.channel!r}, id={self.id!r}, name={self.name!r})"

    @property
    def sse_frame(self) -> bytes:
        """`id:`, `event:` and `data:` lines ending in a blank line."""
        if self._sse is None:
            self._sse = b"id: %s\nevent: %s\ndata: %s\n\n" % (
                self.id.encode(),
                self.name.encode(),
                self.data,
            )
        return self._sse

    @property
    def ws_text(self) -> str:
        """The `message` frame of the WebSocket protocol."""
        if self._ws is None:
            self._ws = (
                '{"type":"message","channel":'
                + json.dumps(self.channel)
                + ',"id":'
                + json.dumps(self.id)
                + ',"event":'
                + json.dumps(self.name)
                + ',"data":'
                + self.data.decode()
                + "}"
            )
        return self._ws
