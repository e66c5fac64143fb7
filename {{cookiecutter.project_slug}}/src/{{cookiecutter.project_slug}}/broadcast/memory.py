"""The in-process backend: one worker, history in memory.

Event ids are `<epoch>-<sequence>`: the epoch changes with every start, so an id
from before a restart is recognised as one and answered with a resync.

Retained history is bounded in total by `HISTORY_MAX_BYTES`: past it, the
history of the channels published to least recently goes first (a resume into
it gets a resync), so one publisher spraying many channels can't exhaust memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..events import Event
from .backend import Sink

logger = logging.getLogger(__name__)

# A sequence number has at most 20 digits; longer ids are refused before `int()`.
MAX_DIGITS = 20
# What an event or a key costs beyond its own bytes: the `Event` and its strings'
# headers, the history entry, the dict slot. An estimate, on the generous side.
EVENT_OVERHEAD = 256
KEY_OVERHEAD = 160
DROP_LOG_PERIOD = 60.0


def _cost(event: Event) -> int:
    return len(event.data) + len(event.name) + len(event.id) + EVENT_OVERHEAD


def _key_cost(key: str, event_id: str) -> int:
    return len(key) + len(event_id) + KEY_OVERHEAD


class _ChannelHistory:
    __slots__ = ("entries", "floor", "keys", "last_publish", "size")

    def __init__(self, size: int, floor: int) -> None:
        self.entries: deque[tuple[int, Event]] = deque(maxlen=size)
        # Resuming after any sequence number >= floor loses nothing.
        self.floor = floor
        self.last_publish = 0.0
        # Idempotency key -> (the id it was answered with, when), oldest first.
        self.keys: dict[str, tuple[str, float]] = {}
        self.size = 0  # bytes held, as `_cost` counts them

    def remember(self, key: str, event_id: str) -> int:
        """Keep `key` as answered with `event_id`; the bytes it adds."""
        self.keys[key] = (event_id, self.last_publish)
        added = _key_cost(key, event_id)
        self.size += added
        return added

    def seen(self, key: str) -> str | None:
        """The id `key` was first answered with, if it is kept."""
        first = self.keys.get(key)
        return None if first is None else first[0]

    def expire_keys(self, now: float, ttl: float) -> int:
        """Forget keys older than `ttl`; the bytes freed."""
        freed = 0
        keys = self.keys
        while keys and now - next(iter(keys.values()))[1] >= ttl:
            freed += self.drop_oldest_key()
        return freed

    def drop_oldest_key(self) -> int:
        """Forget the oldest key; the bytes freed."""
        key = next(iter(self.keys))
        event_id, _ = self.keys.pop(key)
        freed = _key_cost(key, event_id)
        self.size -= freed
        return freed

    def append(self, seq: int, event: Event) -> int:
        """Retain `event`; the change in bytes held (the oldest may make way)."""
        freed = 0
        if len(self.entries) == self.entries.maxlen:
            self.floor = self.entries[0][0]
            freed = _cost(self.entries[0][1])
        self.entries.append((seq, event))
        self.last_publish = time.monotonic()
        added = _cost(event) - freed
        self.size += added
        return added

    def drop_oldest(self) -> int:
        """Forget the oldest retained event; the bytes freed."""
        seq, event = self.entries.popleft()
        self.floor = seq
        freed = _cost(event)
        self.size -= freed
        return freed

    def after(self, seq: int) -> list[Event] | None:
        newest = self.entries[-1][0] if self.entries else self.floor
        if not self.floor <= seq <= newest:
            return None
        missed: list[Event] = []
        for entry_seq, event in reversed(self.entries):
            if entry_seq <= seq:
                break
            missed.append(event)
        missed.reverse()
        return missed


class MemoryBackend:
    """Keeps the last `history_size` events per channel for `history_ttl` seconds."""

    _deliver: Callable[[Event], None]  # the sink's, set by `attach`

    def __init__(self, history_size: int, history_ttl: float, *, max_bytes: int) -> None:
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._max_bytes = max_bytes
        self._bytes = 0  # held by every channel's history together
        self._dropped = 0  # channels dropped for the budget since the last warning
        self._dropped_logged = -DROP_LOG_PERIOD
        self._epoch = secrets.token_hex(4)
        # One counter for all channels: ids stay unique even when a channel's
        # history expires and starts again.
        self._seq = 0
        self._histories: dict[str, _ChannelHistory] = {}
        self._followed: set[str] = set()  # channels with local subscribers
        self._sweeper: asyncio.Task[None] | None = None

    def attach(self, sink: Sink) -> None:
        self._deliver = sink.deliver

    async def connect(self) -> None:
        warn_if_one_of_several_workers()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="history-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def is_up(self) -> bool:
        return True

    async def is_ready(self) -> bool:
        return True

    def follow(self, channel: str) -> None:
        self._followed.add(channel)

    def unfollow(self, channel: str) -> None:
        self._followed.discard(channel)
        self._expire(channel, time.monotonic())

    async def wait_live(self, channel: str) -> None:
        """Live at once: a publish here is delivered before it returns."""

    async def publish(
        self, channel: str, name: str, data: bytes, idempotency_key: str | None = None
    ) -> Event:
        # No await in here: the key check and the store are one step.
        history = self._histories.pop(channel, None)
        if history is None:
            history = _ChannelHistory(self._history_size, self._seq)
        # Re-inserted: the dict's order is the order channels were last published to.
        self._histories[channel] = history
        if idempotency_key is not None:
            self._bytes -= history.expire_keys(time.monotonic(), self._history_ttl)
            first = history.seen(idempotency_key)
            if first is not None:
                return Event(channel, first, name, data, duplicate=True)
        self._seq += 1
        event = Event(channel, f"{self._epoch}-{self._seq}", name, data)
        self._bytes += history.append(self._seq, event)
        if idempotency_key is not None:
            self._bytes += history.remember(idempotency_key, event.id)
        self._keep_within_budget(history)
        self._deliver(event)
        return event

    def history_bytes(self) -> int:
        """The bytes all retained history holds, as counted against `HISTORY_MAX_BYTES`."""
        return self._bytes

    def _keep_within_budget(self, current: _ChannelHistory) -> None:
        histories = self._histories
        while self._bytes > self._max_bytes:
            oldest = next(iter(histories))
            history = histories[oldest]
            if history is current:
                # Only the channel just published to is left: it keeps its newest
                # event and, last of all, gives up its oldest idempotency keys.
                if len(current.entries) > 1:
                    self._bytes -= current.drop_oldest()
                elif current.keys:
                    self._bytes -= current.drop_oldest_key()
                else:
                    return
                continue
            del histories[oldest]
            self._bytes -= history.size
            self._dropped += 1
        now = time.monotonic()
        if self._dropped and now - self._dropped_logged >= DROP_LOG_PERIOD:
            # Once a minute at most: under a flood of channels this would be every publish.
            logger.warning(
                "dropped the history of %d channels (least recently published first) "
                "to stay within HISTORY_MAX_BYTES=%d",
                self._dropped,
                self._max_bytes,
            )
            self._dropped, self._dropped_logged = 0, now

    async def history_after(self, channel: str, last_event_id: str) -> list[Event] | None:
        seq = self._parse(last_event_id)
        history = self._histories.get(channel)
        if seq is None or history is None:
            return None
        return history.after(seq)

    def channel_count(self) -> int:
        """How many channels hold history or subscribers (memory in use)."""
        return len(self._histories.keys() | self._followed)

    def is_after(self, event_id: str, other_id: str) -> bool:
        a, b = self._parse(event_id), self._parse(other_id)
        return a is not None and (b is None or a > b)

    def _parse(self, event_id: str) -> int | None:
        epoch, _, seq = event_id.partition("-")
        # ASCII digits only (`int` also reads `²` and `٣`), and few enough of them.
        if epoch != self._epoch or not (seq.isascii() and seq.isdigit()) or len(seq) > MAX_DIGITS:
            return None
        return int(seq)

    def _expire(self, channel: str, now: float) -> None:
        history = self._histories.get(channel)
        if history is not None and now - history.last_publish >= self._history_ttl:
            del self._histories[channel]
            self._bytes -= history.size

    async def _sweep_forever(self) -> None:
        # Channels nobody listens to keep their history for `history_ttl`, then go.
        period = min(self._history_ttl, 60.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for channel in [c for c in self._histories if c not in self._followed]:
                self._expire(channel, now)


def warn_if_one_of_several_workers() -> None:
    """Log a warning when this process looks like one of several uvicorn workers.

    Each worker would have its own history and subscribers: events published on
    one would never reach clients of another.
    """
    if multiprocessing.parent_process() is None:
        return  # not started by a process manager
    workers = _declared_workers()
    if workers is not None and workers <= 1:
        return
    logger.warning(
        "the memory broadcaster runs inside one of several worker processes (--workers): "
        "events published on one worker won't reach subscribers of another; "
        "use the redis broadcaster to run more than one worker"
    )


def _declared_workers() -> int | None:
    """The worker count uvicorn was given (`--workers N` or `WEB_CONCURRENCY`), if known."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        raw = b""
    args = [part.decode(errors="replace") for part in raw.split(b"\0")]
    for arg, value in zip(args, [*args[1:], ""], strict=True):
        if arg == "--workers" and value.isdigit():
            return int(value)
        if arg.startswith("--workers=") and arg[10:].isdigit():
            return int(arg[10:])
    env = os.environ.get("WEB_CONCURRENCY", "")
    return int(env) if env.isdigit() else None
