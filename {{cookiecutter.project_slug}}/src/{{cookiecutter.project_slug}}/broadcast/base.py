"""The broadcaster interface: publish, subscribe with resume, and local fan-out.

A broadcaster never knows about sockets. Subscribers are objects with `deliver`
and `replay` (a connection's outbox); each event is handed to every local
subscriber of its channel without awaiting any of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Protocol

from ..events import Event


class BroadcasterUnavailable(Exception):
    """The broadcaster can't store or fan out events right now."""


class Subscriber(Protocol):
    """Where a broadcaster hands events: must return at once, never block."""

    def deliver(self, event: Event) -> None:
        """Take one live event."""

    def replay(self, events: Sequence[Event]) -> None:
        """Take retained events being replayed, in order."""

    def lost(self, channel: str) -> None:
        """Hear that events of `channel` may have been missed (the client should resync)."""


class _ReplayGate:
    """Stands in for a subscriber while its history is read, holding live events.

    The subscription starts before history is read, so nothing published in
    between is lost; once the replay is out, the held events that the replay
    didn't already contain follow it.
    """

    __slots__ = ("held", "lost_continuity")

    def __init__(self) -> None:
        self.held: list[Event] = []
        self.lost_continuity = False

    def deliver(self, event: Event) -> None:
        self.held.append(event)

    def replay(self, events: Sequence[Event]) -> None:  # pragma: no cover - never replayed to
        self.held.extend(events)

    def lost(self, channel: str) -> None:
        self.lost_continuity = True  # passed on once the subscriber takes over


class Broadcaster(ABC):
    """Stores events in per-channel history and fans them out to subscribers.

    Subclasses provide storage and transport between processes; this class keeps
    the local subscriber sets and the gapless replay-then-live seam.
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open connections and start background work."""

    async def stop(self) -> None:
        """Release everything `start` opened."""

    def is_up(self) -> bool:
        """Whether publishing and live delivery worked at the last check."""
        return True

    async def is_ready(self) -> bool:
        """Whether publishing and live delivery work right now."""
        return self.is_up()

    # -- the interface transports use -----------------------------------------

    @abstractmethod
    async def publish(
        self, channel: str, name: str, data: bytes, idempotency_key: str | None = None
    ) -> Event:
        """Store the event in history and hand it on for fan-out.

        `data` is compact JSON. Raises `BroadcasterUnavailable` unless the event was
        stored and sent on. With an `idempotency_key` already used on `channel`
        within the history TTL, nothing is published and the answer is an event
        carrying the first publish's id, marked `duplicate`: checking the key
        and storing the event are one atomic step, so a publish that failed or
        timed out may be retried with the same key without a duplicate.
        """

    async def subscribe(
        self,
        channel: str,
        subscriber: Subscriber,
        last_event_id: str | None = None,
        on_live: Callable[[bool], None] | None = None,
    ) -> bool:
        """Start delivering `channel` to `subscriber`, first replaying after `last_event_id`.

        Returns `recovered`: False when `last_event_id` was given but the events
        after it can't all be replayed (then nothing is replayed). `on_live(recovered)`
        runs after any replay and before the first live event, so a transport can
        put its acknowledgement or resync marker exactly there.
        """
        if last_event_id is None:
            self._add(channel, subscriber)
            if on_live is not None:
                on_live(True)
            return True

        gate = _ReplayGate()
        self._add(channel, gate)
        try:
            missed = await self.history_after(channel, last_event_id)
        except BaseException:
            self._discard(channel, gate)
            raise
        recovered = missed is not None
        seen = last_event_id
        if missed:
            subscriber.replay(missed)
            seen = missed[-1].id
        if on_live is not None:
            on_live(recovered)
        held = gate.held
        if held:
            if recovered:
                held = [e for e in held if self.is_after(e.id, seen)]
            subscriber.replay(held)
        # No await since the replay: the swap can't miss an event.
        self._swap(channel, gate, subscriber)
        if gate.lost_continuity:
            subscriber.lost(channel)
        return recovered

    def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Stop delivering `channel` to `subscriber` (no-op if not subscribed)."""
        self._discard(channel, subscriber)

    @abstractmethod
    async def history_after(self, channel: str, last_event_id: str) -> list[Event] | None:
        """Every retained event after `last_event_id`, in order.

        None when continuity can't be guaranteed: the id is unknown, malformed,
        older than the retained history, or from before a restart.
        """

    @abstractmethod
    def is_after(self, event_id: str, other_id: str) -> bool:
        """Whether `event_id` was published after `other_id` on the same channel."""

    # -- local fan-out -------------------------------------------------------

    def subscriber_count(self, channel: str) -> int:
        """How many local subscribers `channel` has."""
        return len(self._subscribers.get(channel, ()))

    def _dispatch(self, event: Event) -> None:
        """Hand `event` to every local subscriber of its channel."""
        subscribers = self._subscribers.get(event.channel)
        if subscribers:
            # A subscriber may unsubscribe itself (overflow) while we iterate.
            for subscriber in tuple(subscribers):
                subscriber.deliver(event)

    def _lost(self, channel: str) -> None:
        """Tell every local subscriber of `channel` that its events may have a gap."""
        for subscriber in tuple(self._subscribers.get(channel, ())):
            subscriber.lost(channel)

    def _add(self, channel: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            subscribers = self._subscribers[channel] = set()
            self._channel_opened(channel)
        subscribers.add(subscriber)

    def _discard(self, channel: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[channel]
            self._channel_closed(channel)

    def _swap(self, channel: str, old: Subscriber, new: Subscriber) -> None:
        subscribers = self._subscribers.setdefault(channel, set())
        subscribers.discard(old)
        subscribers.add(new)

    def _channel_opened(self, channel: str) -> None:
        """Hook: the first local subscriber of `channel` arrived."""

    def _channel_closed(self, channel: str) -> None:
        """Hook: the last local subscriber of `channel` left."""
