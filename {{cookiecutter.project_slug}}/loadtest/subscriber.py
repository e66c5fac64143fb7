"""What the runner needs of a subscriber, whatever its transport.

A subscriber is an `asyncio.Protocol`: the event loop calls it when bytes
arrive, so a thousand subscribers are a thousand small objects, not a thousand
tasks or threads.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar, cast

from .http import Target
from .tally import Tally

CONNECT_TIMEOUT = 15.0


class SubscribeError(Exception):
    """The service refused or dropped a subscriber before it was subscribed."""


class Subscriber(asyncio.Protocol):
    """One client connection subscribed to the load test's channel."""

    name: ClassVar[str]  # the transport, as `--transport` names it

    def __init__(self, index: int, tally: Tally, target: Target, token: str, channel: str) -> None:
        self.index = index
        self.tally = tally
        self.target = target
        self.token = token
        self.channel = channel
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.lost_reason: str | None = None  # why the connection ended, once it has
        self.heartbeats = 0
        self._last_heartbeat = 0.0  # or when it was subscribed

    @classmethod
    async def open(
        cls, index: int, tally: Tally, target: Target, token: str, channel: str
    ) -> Subscriber:
        """Connect and wait until subscribed; `SubscribeError` or `OSError` if not."""
        loop = asyncio.get_running_loop()
        subscriber = cls(index, tally, target, token, channel)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(
                    lambda: subscriber, target.host, target.port, ssl=target.ssl_context()
                )
                await subscriber.subscribed
        except TimeoutError:
            subscriber.close()
            raise SubscribeError(f"not subscribed within {CONNECT_TIMEOUT:g} s") from None
        except BaseException:
            subscriber.close()
            raise
        return subscriber

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like `asyncio.Transport` without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.start()

    def data_received(self, data: bytes) -> None:
        self.received(data, time.monotonic())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost_reason is None:
            self.lost_reason = "connection closed" if exc is None else f"connection lost: {exc}"
        self.fail(self.lost_reason)

    # -- for the transports ------------------------------------------------------

    def start(self) -> None:
        """Send the request that subscribes."""
        raise NotImplementedError

    def received(self, data: bytes, now: float) -> None:
        """Handle bytes that arrived at `now`."""
        raise NotImplementedError

    def ready(self) -> None:
        """The subscription is live."""
        if not self.subscribed.done():
            self._last_heartbeat = time.monotonic()
            self.subscribed.set_result(None)

    def heartbeat(self, now: float) -> None:
        """A heartbeat arrived at `now`."""
        self.heartbeats += 1
        if self.subscribed.done():
            self.tally.heartbeat(self._last_heartbeat, now)
            self._last_heartbeat = now

    def fail(self, reason: str) -> None:
        """Subscribing failed (or the subscription ended) for `reason`."""
        if not self.subscribed.done():
            self.subscribed.set_exception(SubscribeError(reason))
            self.close()
        elif self.lost_reason is None:
            self.lost_reason = reason

    def close(self) -> None:
        """Drop the connection at once."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
