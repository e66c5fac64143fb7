"""The broadcaster: local fan-out over a backend, with gapless resume.

A broadcaster never knows about sockets. Subscribers are objects with `deliver`,
`replay` and `lost` (a connection's outbox); each event is handed to every local
subscriber of its channel without awaiting any of them. Storage and delivery
between processes belong to the `Backend` it is composed with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..events import Event
from .backend import Backend


class Subscriber(Protocol):
    """Where a broadcaster hands events: must return at once, never block."""

    def deliver(self, event: Event) -> None:
        """Take one live event."""

    def replay(self, events: Sequence[Event]) -> None:
        """Take retained events being replayed, in order."""

    def lost(self, channel: str) -> None:
        """Hear that events of `channel` may have been missed (the client should resync)."""


class _ReplayGate:
    """Stands in for a new subscriber while its history is read, and until live catches up.

    It is subscribed before history is read, so nothing published in between is
    lost; once the replay is out, the held events the replay didn't already
    contain follow it. History can run ahead of the live stream (an event is
    read from storage before its live copy arrives): then the gate stays, drops
    the live events up to the last one replayed, and hands over at the first
    newer one.
    """

    __slots__ = ("catch_up", "held", "lost_continuity", "subscriber")

    def __init__(self) -> None:
        self.held: list[Event] = []
        self.lost_continuity = False
        # Set once replayed: takes each live event until the gate hands over.
        self.catch_up: Callable[[Event], None] | None = None
        self.subscriber: Subscriber | None = None  # set while catching up

    def deliver(self, event: Event) -> None:
        if self.catch_up is None:
            self.held.append(event)
        else:
            self.catch_up(event)

    def replay(self, events: Sequence[Event]) -> None:  # pragma: no cover - never replayed to
        self.held.extend(events)

    def lost(self, channel: str) -> None:
        if self.subscriber is not None:
            self.subscriber.lost(channel)
        else:
            self.lost_continuity = True  # passed on once the replay is out


class Broadcaster:
    """Publishes through a backend and fans its events out to local subscribers."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._subscribers: dict[str, set[Subscriber]] = {}
        # Gates still standing in for subscribers whose replay ran ahead of live.
        self._gates: dict[tuple[str, Subscriber], _ReplayGate] = {}
        backend.attach(self)

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Connect the backend."""
        await self._backend.connect()

    async def stop(self) -> None:
        """Close the backend."""
        await self._backend.close()

    def is_up(self) -> bool:
        """Whether publishing and live delivery worked at the last check."""
        return self._backend.is_up()

    async def is_ready(self) -> bool:
        """Whether publishing and live delivery work right now."""
        return await self._backend.is_ready()

    # -- the interface transports use -----------------------------------------

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
        return await self._backend.publish(channel, name, data, idempotency_key)

    async def history_after(self, channel: str, last_event_id: str) -> list[Event] | None:
        """Every retained event after `last_event_id`, in order.

        None when continuity can't be guaranteed: the id is unknown, malformed,
        older than the retained history, or from before a restart.
        """
        return await self._backend.history_after(channel, last_event_id)

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
        put its acknowledgement or resync marker exactly there. Raises
        `BroadcasterUnavailable` when the channel can't be delivered live.
        """
        gate = _ReplayGate()
        self._add(channel, gate)
        try:
            await self._backend.wait_live(channel)
            missed = (
                [] if last_event_id is None else await self.history_after(channel, last_event_id)
            )
        except BaseException:
            self._discard(channel, gate)
            raise
        recovered = missed is not None
        if missed:
            subscriber.replay(missed)
        if on_live is not None:
            on_live(recovered)
        # Dedup by id: whatever the replay already carried is dropped.
        seen = (missed[-1].id if missed else last_event_id) if recovered else None
        held = gate.held
        if seen is not None:
            held = [e for e in held if self._backend.is_after(e.id, seen)]
        if held:
            subscriber.replay(held)
        if gate.lost_continuity:
            subscriber.lost(channel)
        # No await since the replay: the handover can't miss an event.
        if seen is None or held or self._live_reached(gate.held, seen):
            self._swap(channel, gate, subscriber)
        else:
            self._catch_up(channel, gate, subscriber, seen)
        return recovered

    def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Stop delivering `channel` to `subscriber` (no-op if not subscribed)."""
        gate = self._gates.pop((channel, subscriber), None)
        self._discard(channel, subscriber if gate is None else gate)

    def subscriber_count(self, channel: str) -> int:
        """How many local subscribers `channel` has."""
        return len(self._subscribers.get(channel, ()))

    # -- the backend's sink --------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Hand `event` to every local subscriber of its channel."""
        subscribers = self._subscribers.get(event.channel)
        if subscribers:
            # A subscriber may unsubscribe itself (overflow) while we iterate.
            for subscriber in tuple(subscribers):
                subscriber.deliver(event)

    def lost(self, channel: str) -> None:
        """Tell every local subscriber of `channel` that its events may have a gap."""
        for subscriber in tuple(self._subscribers.get(channel, ())):
            subscriber.lost(channel)

    # -- local subscriber sets -------------------------------------------------

    def _add(self, channel: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            subscribers = self._subscribers[channel] = set()
            self._backend.follow(channel)
        subscribers.add(subscriber)

    def _discard(self, channel: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[channel]
            self._backend.unfollow(channel)

    def _live_reached(self, held: list[Event], seen: str) -> bool:
        return bool(held) and not self._backend.is_after(seen, held[-1].id)

    def _catch_up(self, channel: str, gate: _ReplayGate, subscriber: Subscriber, seen: str) -> None:
        def catch_up(event: Event) -> None:
            if not self._backend.is_after(event.id, seen):
                return  # replayed already; its live copy came late
            self._gates.pop((channel, subscriber), None)
            self._swap(channel, gate, subscriber)
            subscriber.deliver(event)

        gate.catch_up = catch_up
        gate.subscriber = subscriber
        self._gates[(channel, subscriber)] = gate

    def _swap(self, channel: str, old: Subscriber, new: Subscriber) -> None:
        subscribers = self._subscribers.setdefault(channel, set())
        subscribers.discard(old)
        subscribers.add(new)
