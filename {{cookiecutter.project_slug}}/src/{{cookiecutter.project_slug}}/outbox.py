"""A connection's bounded queue of outgoing items.

Publishers never wait on it: `deliver` appends and returns at once. When a client
reads too slowly for its queue to drain, the queue overflows and the connection
is told to go, so nobody else is ever held up by it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from .events import Event

T = TypeVar("T")


class Outbox(Generic[T]):
    """Events and transport-specific control items waiting to be written.

    Only live events count against `maxsize`; replayed history and control items
    (heartbeats, replies) are bounded by their own producers.
    """

    __slots__ = (
        "_controls",
        "_items",
        "_live",
        "_maxsize",
        "_on_lost",
        "_on_overflow",
        "_waiter",
        "closed",
        "overflowed",
        "taken_events",
    )

    def __init__(
        self,
        maxsize: int,
        on_overflow: Callable[[], None],
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self._items: deque[Event | T] = deque()
        self._live = 0  # live events among `_items`: what `maxsize` bounds
        self._controls = 0  # control items among `_items`
        self._maxsize = maxsize
        self._on_overflow = on_overflow
        self._on_lost = on_lost
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.overflowed = False
        # How many of the items the last `take` returned were events, so that a
        # writer counts deliveries per batch without looking at each item.
        self.taken_events = 0

    def __len__(self) -> int:
        return len(self._items)

    def deliver(self, event: Event) -> None:
        """Queue a live event; overflow closes the outbox and tells the connection."""
        if self.closed:
            return
        if self._live >= self._maxsize:
            self.overflowed = True
            self.close()
            self._on_overflow()
            return
        self._live += 1
        self._items.append(event)
        # `_wake`, inlined: this runs once per event per subscriber.
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def replay(self, events: Iterable[Event]) -> None:
        """Queue history being replayed, whatever the queue's length."""
        if not self.closed:
            self._items.extend(events)
            self._wake()

    def lost(self, channel: str) -> None:
        """The broadcaster lost continuity on `channel`: the connection queues its resync marker."""
        if not self.closed and self._on_lost is not None:
            self._on_lost(channel)

    def push(self, item: T, *, urgent: bool = False) -> None:
        """Queue a control item; `urgent` ones jump ahead of queued events."""
        if self.closed:
            return
        if urgent:
            self._items.appendleft(item)
        else:
            self._items.append(item)
        self._controls += 1
        self._wake()

    def close(self) -> None:
        """Stop accepting items and wake the writer so it can finish."""
        self.closed = True
        self._wake()

    def wait(self) -> asyncio.Future[None]:
        """A future that completes once items are queued or the outbox is closed.

        A plain method, not a coroutine: a writer waits once per event it sends,
        and a coroutine object per wait, times every subscriber, was the commonest
        young object the garbage collector kept scanning under load.
        """
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if self._items or self.closed:
            waiter.set_result(None)
        return waiter

    def take(self) -> list[Event | T]:
        """Every queued item, oldest first (an empty list when there are none).

        `taken_events` says how many of them are events.
        """
        items = list(self._items)
        self._items.clear()
        self.taken_events = len(items) - self._controls
        self._live = self._controls = 0
        return items

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
