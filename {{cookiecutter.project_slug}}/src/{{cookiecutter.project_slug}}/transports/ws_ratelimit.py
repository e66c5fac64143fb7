"""Flood control for one WebSocket connection, exactly as the protocol states it.

Every client frame takes a token from a bucket that refills at `rate` per second
and holds `2 * rate`, full at first. A frame that finds no token is dropped (and
answered `rate_limited`); once more than `rate` frames were dropped within the
last second, the connection is closed.
"""

from __future__ import annotations

import enum
from collections import deque

WINDOW = 1.0  # seconds: the sliding window that counts dropped frames


class Verdict(enum.Enum):
    """What to do with one client frame."""

    ALLOW = "allow"
    DROP = "drop"
    CLOSE = "close"


class FloodGuard:
    """A token bucket plus a sliding count of dropped frames."""

    __slots__ = ("_capacity", "_drops", "_rate", "_tokens", "_updated")

    def __init__(self, rate: int, now: float) -> None:
        self._rate = float(rate)
        self._capacity = 2.0 * rate
        self._tokens = self._capacity
        self._updated = now
        # Made at the first dropped frame: most connections never have one, and
        # an empty deque is most of this object's size.
        self._drops: deque[float] | None = None

    def check(self, now: float) -> Verdict:
        """Take a token for a frame that arrived at monotonic time `now`."""
        elapsed = max(now - self._updated, 0.0)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Verdict.ALLOW
        drops = self._drops
        if drops is None:
            drops = self._drops = deque()
        drops.append(now)
        while drops[0] <= now - WINDOW:
            drops.popleft()
        return Verdict.CLOSE if len(drops) > self._rate else Verdict.DROP
