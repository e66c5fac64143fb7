"""A connection's bounded queue of outgoing items.

Publishers never wait on it: `deliver` appends and returns at once. When a client
reads too slowly for its queue to drain, the queue overflows and the connection
is told to go, so nobody else is ever held up by it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .events import Event

T = TypeVar("T")


class Outbox(Generic[T]):
    """Events and transport-specific control items waiting to be written.

    Only live events count against `maxsize`; replayed history and control items
    (heartbeats, replies) are bounded by their own producers.

    A writer takes what is queued all at once (`take`, for a transport that
    writes a batch as one message), or pops items off `queued` one at a time,
    calling `forget(item)` for each while `uncounted` is not zero. A popped
    live event needs no bookkeeping (the bound is on the queue's length), so
    the usual item costs the writer nothing but the pop.
    """

    __slots__ = (
        "_maxsize",
        "_on_lost",
        "_on_overflow",
        "_replayed",
        "_waiter",
        "closed",
        "overflowed",
        "queued",
        "taken_events",
        "uncounted",
    )

    def __init__(
        self,
        maxsize: int,
        on_overflow: Callable[[], None],
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        # Oldest first. Only a writer pops from it directly; everything else
        # goes through the methods below, which keep the counts.
        self.queued: deque[Event | T] = deque()
        # Queued items that are not live events: what `maxsize` doesn't bound.
        self.uncounted = 0
        self._replayed = 0  # replayed events among `queued`; the rest are control items
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
        return len(self.queued)

    def deliver(self, event: Event) -> None:
        """Queue a live event; overflow closes the outbox and tells the connection."""
        if self.closed:
            return
        if len(self.queued) - self.uncounted >= self._maxsize:
            self.overflowed = True
            self.close()
            self._on_overflow()
            return
        self.queued.append(event)
        # `_wake`, inlined: this runs once per event per subscriber.
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def replay(self, events: Sequence[Event]) -> None:
        """Queue history being replayed, whatever the queue's length."""
        if not self.closed:
            self.queued.extend(events)
            self._replayed += len(events)
            self.uncounted += len(events)
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
            self.queued.appendleft(item)
        else:
            self.queued.append(item)
        self.uncounted += 1
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
        if self.queued or self.closed:
            waiter.set_result(None)
        return waiter

    def take(self) -> list[Event | T]:
        """Every queued item, oldest first (an empty list when there are none).

        `taken_events` says how many of them are events.
        """
        items = list(self.queued)
        self.queued.clear()
        self.taken_events = len(items) - (self.uncounted - self._replayed)
        self.uncounted = self._replayed = 0
        return items

    def forget(self, item: Event | T) -> None:
        """Account for `item`, just popped off `queued` while `uncounted` was not zero.

        A popped event is taken for a replayed one while replayed events are
        queued: exact in the usual order (a replay, then live events). Live
        events already waiting before a replay are counted as replayed ones
        until the replay is out, so the live count runs high by at most their
        number, and the bound is never passed.
        """
        if not isinstance(item, Event):
            self.uncounted -= 1
        elif self._replayed:
            self._replayed -= 1
            self.uncounted -= 1

    def retain(self, keep: Callable[[Event | T], bool]) -> None:
        """Drop the queued items `keep` refuses (what a closing connection no longer sends)."""
        kept = [item for item in self.queued if keep(item)]
        self.queued.clear()
        self.queued.extend(kept)
        events = sum(isinstance(item, Event) for item in kept)
        self._replayed = min(self._replayed, events)
        self.uncounted = len(kept) - events + self._replayed

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
