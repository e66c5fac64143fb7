"""The Redis backend: many workers and machines, history in Redis Streams.

A publish stores the event in the channel's stream and announces it on pub/sub in
one atomic script (`redis_streams`). Each worker listens on one pub/sub
connection (`redis_listener`; on a Redis Cluster one per primary node,
`redis_cluster`), decodes each event once and hands it to the broadcaster, which
fans it out to its local subscribers. While Redis is down, publishing fails at
once (503) instead of losing events, and open connections simply wait for it to
come back.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..events import Event
from .backend import BroadcasterUnavailable, Sink
from .redis_cluster import ClusterListener
from .redis_connect import REDIS_ERRORS, client_name, connect, connect_cluster
from .redis_listener import PubSubListener
from .redis_streams import KEY_PREFIX, StreamId, StreamStore, parse_id

READY_TIMEOUT = 1.0  # how long /readyz waits for Redis's PING
START_WAIT = 3.0  # how long startup waits for Redis before starting not-ready
SUBSCRIBE_WAIT = 5.0  # how long a new subscriber waits for its channel to go live


class _Listener(Protocol):
    """What the backend needs of a listener: one server's, or a whole cluster's."""

    @property
    def up(self) -> bool: ...

    async def start(self, wait: float) -> None: ...

    async def stop(self) -> None: ...

    def open(self, key: str) -> None: ...

    def close(self, key: str) -> object: ...

    async def wait_ready(self, key: str, within: float) -> bool: ...

    def last_id(self, key: str) -> StreamId | None: ...


class RedisBackend:
    """Events through Redis; history is Redis Streams, live delivery is pub/sub.

    Keeps at least `history_size` events per channel (Redis trims in whole
    blocks), for `history_ttl` seconds after the channel's last publish. With
    `cluster`, `url` names any node of a Redis Cluster.
    """

    def __init__(
        self,
        url: str,
        *,
        history_size: int,
        history_ttl: int,
        cluster: bool = False,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self._url = url
        self._cluster = cluster
        self._prefix = prefix
        name = client_name(prefix, "commands")
        commands = connect_cluster(url, name) if cluster else connect(url, name)
        self._store = StreamStore(
            commands,
            history_size=history_size,
            history_ttl=history_ttl,
            prefix=prefix,
            cluster=cluster,
        )

    def attach(self, sink: Sink) -> None:
        canary_prefix = f"{self._prefix.rstrip(':')}.canary:"
        self._listener: _Listener
        if self._cluster:
            self._listener = ClusterListener(
                self._url,
                self._store,
                sink,
                name_prefix=self._prefix,
                canary_prefix=canary_prefix,
            )
        else:
            self._listener = PubSubListener(
                connect(self._url, client_name(self._prefix, "pubsub")),
                self._store.commands,
                self._store,
                sink,
                canary_prefix=canary_prefix,
            )

    # -- lifecycle -----------------------------------------------------------

    async def connect(self) -> None:
        await self._listener.start(wait=START_WAIT)

    async def close(self) -> None:
        await self._listener.stop()
        await self._store.commands.aclose()

    def is_up(self) -> bool:
        return self._listener.up

    async def is_ready(self) -> bool:
        if not self._listener.up:
            return False
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                return bool(await self._store.commands.ping())
        except (*REDIS_ERRORS, TimeoutError):
            return False

    # -- publishing and history ----------------------------------------------

    async def publish(
        self, channel: str, name: str, data: bytes, idempotency_key: str | None = None
    ) -> Event:
        # Local subscribers hear it through pub/sub like everyone else's, so that
        # delivery stays in stream order however publishes interleave.
        return await self._store.publish(channel, name, data, idempotency_key)

    async def history_after(self, channel: str, last_event_id: str) -> list[Event] | None:
        missed = await self._store.history_after(channel, last_event_id)
        if not self._cluster or not missed:
            return missed
        # While a channel's slot migrates, its stream may already sit on the new
        # node, where publishes are announced, while this worker still listens on
        # the old one: the stream runs ahead of live delivery until the move
        # completes and the listener backfills. What the listener hasn't delivered
        # yet reaches the subscriber through it; replaying it too would repeat it.
        delivered = self._listener.last_id(self._store.key(channel))
        if delivered is None:
            return missed
        return [e for e in missed if (parse_id(e.id) or delivered) <= delivered]

    def is_after(self, event_id: str, other_id: str) -> bool:
        a, b = parse_id(event_id), parse_id(other_id)
        return a is not None and (b is None or a > b)

    # -- following channels --------------------------------------------------------

    def follow(self, channel: str) -> None:
        self._listener.open(self._store.key(channel))

    def unfollow(self, channel: str) -> None:
        self._listener.close(self._store.key(channel))

    async def wait_live(self, channel: str) -> None:
        """Wait until the channel's pub/sub subscription is in place and caught up."""
        if not await self._listener.wait_ready(self._store.key(channel), SUBSCRIBE_WAIT):
            raise BroadcasterUnavailable("redis pub/sub is not connected")
