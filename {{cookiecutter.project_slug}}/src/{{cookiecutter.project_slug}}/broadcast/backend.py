"""What the broadcaster asks of a backend: storage, ids, and events between processes.

The broadcaster (`hub`) keeps the local subscribers; a backend keeps the history
and carries events between processes. It hands every published event, its own
process's included, to the `Sink` it was attached to, in order per channel, and
says when it may have lost some (`Sink.lost`).

Departure from encode/broadcaster, whose backends are read with an awaited
`next_published()`: here a backend pushes into the sink, so an event costs no
await and no queue between the backend and the subscribers' outboxes.
"""

from __future__ import annotations

from typing import Protocol

from ..events import Event


class BroadcasterUnavailable(Exception):
    """The broadcaster can't store or fan out events right now."""


class Sink(Protocol):
    """Where a backend hands live events: must return at once, never block."""

    def deliver(self, event: Event) -> None:
        """Take one live event (published by any process)."""

    def lost(self, channel: str) -> None:
        """Hear that events of `channel` may have been missed."""


class Backend(Protocol):
    """History and delivery between processes, behind one screen."""

    def attach(self, sink: Sink) -> None:
        """Hand every live event, and every loss of continuity, to `sink` from now on."""

    async def connect(self) -> None:
        """Open connections and start background work."""

    async def close(self) -> None:
        """Release everything `connect` opened."""

    def is_up(self) -> bool:
        """Whether publishing and live delivery worked at the last check."""

    async def is_ready(self) -> bool:
        """Whether publishing and live delivery work right now."""

    async def publish(
        self, channel: str, name: str, data: bytes, idempotency_key: str | None = None
    ) -> Event:
        """Store the event and send it on; see `Broadcaster.publish`."""

    async def history_after(self, channel: str, last_event_id: str) -> list[Event] | None:
        """Every retained event after `last_event_id`, in order; None without continuity."""

    def is_after(self, event_id: str, other_id: str) -> bool:
        """Whether `event_id` was published after `other_id` on the same channel."""

    def follow(self, channel: str) -> None:
        """Start delivering `channel`'s events (its first local subscriber arrived)."""

    def unfollow(self, channel: str) -> None:
        """Stop delivering `channel`'s events (its last local subscriber left)."""

    async def wait_live(self, channel: str) -> None:
        """Return once `channel`, followed, is delivered live; else `BroadcasterUnavailable`.

        Every event published after this returns reaches the sink, so history
        read afterwards and the live events overlap rather than leave a gap.
        """
