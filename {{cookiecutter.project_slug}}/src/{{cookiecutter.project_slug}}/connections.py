"""Open client connections: admission, heartbeats, expiry and shutdown, for every transport.

One ticker task per worker drives the heartbeats of all connections, and
connections whose tokens expire in the same second share one timer, so an idle
connection costs no task and no timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from abc import ABC, abstractmethod

from .auth import Principal
from .metrics import Metrics

logger = logging.getLogger(__name__)


class CloseReason(enum.Enum):
    """Why the service ends a connection; each transport maps it to its own signal."""

    SHUTDOWN = "server shutting down"
    SLOW_CONSUMER = "slow consumer"
    TOKEN_EXPIRED = "token expired"
    IDLE = "idle timeout"
    OVERLOADED = "too many connections"


class Refusal(enum.Enum):
    """Why the registry won't admit a connection; each transport answers it its own way."""

    SHUTTING_DOWN = "server shutting down"
    FULL = "too many connections"
    SUBJECT_FULL = "too many connections for this subject"


class Connection(ABC):
    """What the registry needs of an open connection, whatever its transport."""

    transport: str

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        # The second whose timer closes it (`ExpiryTimers`), while it has one.
        self.expires_at: int | None = None

    @abstractmethod
    def tick(self, now: float) -> None:
        """Called every tick (monotonic `now`): send heartbeats, notice silence."""

    @abstractmethod
    def close(self, reason: CloseReason) -> None:
        """Start closing for `reason`; must not block."""


class ExpiryTimers:
    """Closes connections once their tokens expire: one timer per second, not per connection.

    A timer of its own cost each idle connection about 0.7 KiB (the handle, its
    arguments, a copy of the context). Here the connections whose tokens expire
    in the same second share one: every connection of one token, or of tokens
    minted together. An `exp` with a fraction of a second is rounded up to the
    next whole second, within the 1 s after `exp` that a connection may outlive
    its token.
    """

    def __init__(self) -> None:
        self._due: dict[int, tuple[asyncio.TimerHandle, set[Connection]]] = {}

    def __len__(self) -> int:
        """How many timers are armed."""
        return len(self._due)

    def add(self, connection: Connection) -> None:
        """Close `connection` when its principal's token expires (rearmed if it had a timer)."""
        self.discard(connection)
        second = math.ceil(connection.principal.exp)
        entry = self._due.get(second)
        if entry is None:
            delay = max(second - time.time(), 0.0)
            timer = asyncio.get_running_loop().call_later(delay, self._expire, second)
            entry = self._due[second] = (timer, set())
        entry[1].add(connection)
        connection.expires_at = second

    def discard(self, connection: Connection) -> None:
        """Forget `connection`; a timer left with no connection is cancelled."""
        second, connection.expires_at = connection.expires_at, None
        if second is None or (entry := self._due.get(second)) is None:
            return
        timer, connections = entry
        connections.discard(connection)
        if not connections:
            timer.cancel()
            del self._due[second]

    def _expire(self, second: int) -> None:
        _, connections = self._due.pop(second)
        for connection in connections:
            connection.expires_at = None
            try:
                connection.close(CloseReason.TOKEN_EXPIRED)
            except Exception:  # one broken connection must not keep the others open
                logger.exception("closing a %s connection failed", connection.transport)


class ConnectionRegistry:
    """Every open connection of this worker, bounded by `MAX_CONNECTIONS`.

    With `max_per_subject` > 0 (`MAX_CONNECTIONS_PER_SUBJECT`), one token `sub`
    holds at most that many of them, so that one leaked or abused token can't
    take every slot.
    """

    def __init__(
        self,
        max_connections: int,
        heartbeat_interval: float,
        metrics: Metrics,
        max_per_subject: int = 0,
    ) -> None:
        self._max = max_connections
        self._max_per_subject = max_per_subject
        self._per_subject: dict[str, int] = {}
        self._connections: set[Connection] = set()
        self._metrics = metrics
        self._tick_period = min(heartbeat_interval / 4, 1.0)
        self._ticker: asyncio.Task[None] | None = None
        self._emptied = asyncio.Event()
        self._expiries = ExpiryTimers()
        self.shutting_down = False

    def __len__(self) -> int:
        return len(self._connections)

    def admit(self, connection: Connection) -> Refusal | None:
        """Register `connection` (None), or say why it is refused."""
        sub = connection.principal.sub
        refusal = None
        if self.shutting_down:
            refusal = Refusal.SHUTTING_DOWN
        elif len(self._connections) >= self._max:
            refusal = Refusal.FULL
        elif self._max_per_subject and self._per_subject.get(sub, 0) >= self._max_per_subject:
            refusal = Refusal.SUBJECT_FULL
        if refusal is not None:
            self._metrics.rejected_connections.labels(connection.transport).inc()
            return refusal
        self._connections.add(connection)
        self._per_subject[sub] = self._per_subject.get(sub, 0) + 1
        self._emptied.clear()
        self._metrics.connections.labels(connection.transport).inc()
        self._expiries.add(connection)
        return None

    def release(self, connection: Connection) -> None:
        """Forget `connection`; its slot is free at once."""
        if connection in self._connections:
            self._connections.remove(connection)
            sub = connection.principal.sub
            left = self._per_subject[sub] - 1
            if left:
                self._per_subject[sub] = left
            else:
                del self._per_subject[sub]
            self._expiries.discard(connection)
            self._metrics.connections.labels(connection.transport).dec()
        if not self._connections:
            self._emptied.set()

    def renew_expiry(self, connection: Connection) -> None:
        """Rearm the expiry of `connection`, whose principal has changed (a refreshed token)."""
        if connection in self._connections:
            self._expiries.add(connection)

    def start(self) -> None:
        """Start the ticker that drives heartbeats and idle checks."""
        self._ticker = asyncio.create_task(self._tick_forever(), name="connection-ticker")

    async def stop(self) -> None:
        """Stop the ticker."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    def close_all(self) -> None:
        """Refuse new connections and ask every open one to close (shutdown)."""
        self.shutting_down = True
        for connection in tuple(self._connections):
            connection.close(CloseReason.SHUTDOWN)
        if not self._connections:
            self._emptied.set()

    async def wait_closed(self) -> None:
        """Wait until every connection has gone."""
        if self._connections:
            await self._emptied.wait()

    async def _tick_forever(self) -> None:
        due = time.monotonic()
        while True:
            # On a fixed schedule: ticking many connections (or a busy loop) delays
            # one tick, not every later one, so heartbeats don't drift apart.
            due += self._tick_period
            delay = due - time.monotonic()
            if delay < -self._tick_period:
                due -= delay  # over a tick behind: skip it, and count on from now
            await asyncio.sleep(max(delay, 0.0))
            now = time.monotonic()
            for connection in tuple(self._connections):
                try:
                    connection.tick(now)
                except Exception:  # one broken connection must not stop the others' heartbeats
                    logger.exception("heartbeat failed for a %s connection", connection.transport)
