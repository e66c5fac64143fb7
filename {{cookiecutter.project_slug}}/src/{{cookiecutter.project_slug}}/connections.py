"""Open client connections: admission, heartbeats, expiry and shutdown, for every transport.

One ticker task per worker drives the timers of all connections, so an idle
connection costs no task and no timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
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
        self._expiry: asyncio.TimerHandle | None = None

    @abstractmethod
    def tick(self, now: float) -> None:
        """Called every tick (monotonic `now`): send heartbeats, notice silence."""

    @abstractmethod
    def close(self, reason: CloseReason) -> None:
        """Start closing for `reason`; must not block."""

    def schedule_expiry(self) -> None:
        """(Re)arm the timer that closes the connection when its token expires."""
        if self._expiry is not None:
            self._expiry.cancel()
        delay = max(self.principal.seconds_left(), 0.0)
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(delay, self.close, CloseReason.TOKEN_EXPIRED)

    def cancel_expiry(self) -> None:
        """Disarm the expiry timer (the connection is gone)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


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
        connection.schedule_expiry()
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
            connection.cancel_expiry()
            self._metrics.connections.labels(connection.transport).dec()
        if not self._connections:
            self._emptied.set()

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
