"""The event: what a publish creates, and its wire encodings, computed once."""

from __future__ import annotations

import json
import math
import re
from typing import Any

DEFAULT_EVENT_NAME = "message"
# `Idempotency-Key` / `idempotency_key`: 1-128 printable ASCII characters.
IDEMPOTENCY_KEY_RE = re.compile(r"[\x20-\x7e]{1,128}")
IDEMPOTENCY_KEY_RULE = "use 1-128 printable ASCII characters"


def is_valid_idempotency_key(key: str) -> bool:
    """Whether `key` is 1-128 printable ASCII characters."""
    return IDEMPOTENCY_KEY_RE.fullmatch(key) is not None


# A `\uD800`-`\uDFFF` escape: the only way a lone surrogate gets into decoded JSON.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def encode_json(value: Any) -> bytes:
    """Compact JSON, UTF-8, never split over lines (SSE `data:` needs one line).

    `ValueError` for what has no JSON form (`inf`, `nan`, a lone surrogate):
    every subscriber would otherwise receive text its parser refuses.
    """
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate, which is not Unicode text") from None


def decode_json(raw: str | bytes) -> Any:
    """Parse JSON from a client; `ValueError` for anything that isn't strict JSON.

    Refused, because they would be re-encoded as invalid JSON or invalid UTF-8
    for every subscriber: `NaN`, `Infinity`, numbers too large for a finite
    double (`1e999`), and strings holding a lone surrogate (an unpaired
    `\\ud800` escape).
    Absurdly deep nesting is a `ValueError`, not a crash.
    """
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if isinstance(raw, bytes):
        escaped = _SURROGATE_ESCAPE_BYTES.search(raw) is not None
    else:
        escaped = _SURROGATE_ESCAPE.search(raw) is not None
    # Valid surrogate pairs decode to one character; any surrogate left is a lone one.
    if escaped and _holds_lone_surrogate(value):
        raise ValueError("a string holds a lone surrogate, which is not Unicode text")
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:32]} is out of range")
    return number


def _holds_lone_surrogate(value: Any) -> bool:
    # Iterative, so that deep nesting can't exhaust the stack.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class Event:
    """One published event.

    Every subscriber of a process shares the same `Event`, so the SSE frame and the
    WebSocket text are encoded once per process, on first use, not once per client.
    """

    __slots__ = ("_sse", "_ws", "channel", "data", "duplicate", "id", "name")

    def __init__(
        self, channel: str, id: str, name: str, data: bytes, *, duplicate: bool = False
    ) -> None:
        self.channel = channel
        self.id = id
        self.name = name
        self.data = data  # the published `data` as compact JSON
        # True for the answer to a repeated idempotency key: the first publish's
        # id, nothing stored or delivered again.
        self.duplicate = duplicate
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
