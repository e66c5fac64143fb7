"""The Redis broadcaster: many workers and machines, history in Redis Streams.

A publish stores the event in the channel's stream and announces it on pub/sub in
one atomic script. Each worker holds one pub/sub connection (see
`redis_listener`), decodes each event once and fans it out to its local
subscribers. While Redis is down, publishing fails at once (503) instead of
losing events, and open connections simply wait for it to come back.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from ..events import Event
from .base import Broadcaster, BroadcasterUnavailable, Subscriber
from .redis_listener import NO_ID, PubSubListener
from .redis_streams import (
    KEY_PREFIX,
    PUBLISH_SCRIPT,
    StreamId,
    channel_of,
    decode_entry,
    format_id,
    idempotency_key_for,
    key_for,
    parse_id,
)

# Short timeouts: during an outage a publish fails fast rather than hanging.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
READY_TIMEOUT = 1.0  # how long /readyz waits for Redis's PING
START_WAIT = 3.0  # how long startup waits for Redis before starting not-ready
SUBSCRIBE_WAIT = 5.0  # how long a new subscriber waits for its channel to go live
# What a failed command raises (the cluster client's own errors aren't RedisErrors).
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


class _Holder:
    """Keeps a channel open while its pub/sub subscription is being set up."""

    __slots__ = ()

    def deliver(self, event: Event) -> None:
        """Drop it: the subscriber isn't live yet, and its replay reads the stream after this."""

    def replay(self, events: Sequence[Event]) -> None:  # pragma: no cover - never replayed to
        """Never called."""

    def lost(self, channel: str) -> None:
        """Nothing to do: the subscriber's own replay decides its continuity."""


class RedisBroadcaster(Broadcaster):
    """Broadcasts through Redis; history is Redis Streams, live fan-out is pub/sub.

    Keeps at least `history_size` events per channel (Redis trims in whole
    blocks), for `history_ttl` seconds after the channel's last publish.
    """

    def __init__(
        self,
        url: str,
        *,
        history_size: int,
        history_ttl: int,
        prefix: str = KEY_PREFIX,
    ) -> None:
        super().__init__()
        self._url = url
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._prefix = prefix
        self._commands: Any = self._connect_commands()
        self._publish_script = self._commands.register_script(self._script())
        self._listener: Any = self._make_listener()

    # What a cluster (see `redis_cluster`) does differently: how it connects,
    # listens, names keys and announces events.

    def _connect_commands(self) -> Any:
        return self._client("commands")

    def _make_listener(self) -> Any:
        return PubSubListener(
            self._client("pubsub"),
            self._commands,
            fetch_from=self._fetch_from,
            latest=self._latest,
            dispatch=self._dispatch,
            lost=self._lost,
            to_channel=self._to_channel,
            canary_prefix=self._canary_prefix(),
        )

    def _script(self) -> str:
        return PUBLISH_SCRIPT

    def _key(self, channel: str) -> str:
        return key_for(channel, self._prefix)

    def _to_channel(self, key: str) -> str:
        return channel_of(key, self._prefix)

    def _canary_prefix(self) -> str:
        return f"{self._prefix.rstrip(':')}.canary:"

    def _client(self, role: str) -> Redis:
        # No retries inside redis-py: a failed publish is answered 503 rather than
        # stored twice, and a dropped pub/sub connection must be noticed (and
        # backfilled) rather than silently replaced.
        return Redis.from_url(
            self._url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            client_name=self._client_name(role),
        )

    def _client_name(self, role: str) -> str:
        return f"{self._prefix}{role}:{socket.gethostname()}:{os.getpid()}"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        await self._listener.start(wait=START_WAIT)

    async def stop(self) -> None:
        await self._listener.stop()
        await self._commands.aclose()

    def is_up(self) -> bool:
        return bool(self._listener.up)

    async def is_ready(self) -> bool:
        if not self._listener.up:
            return False
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                return bool(await self._commands.ping())
        except (*REDIS_ERRORS, TimeoutError):
            return False

    # -- publishing and history ----------------------------------------------

    async def publish(
        self, channel: str, name: str, data: bytes, idempotency_key: str | None = None
    ) -> Event:
        keys = [self._key(channel)]
        if idempotency_key is not None:
            keys.append(idempotency_key_for(keys[0], idempotency_key))
        try:
            raw_id, duplicate = await self._publish_script(
                keys=keys, args=[self._history_size, self._history_ttl, name, data]
            )
        except REDIS_ERRORS as exc:
            raise BroadcasterUnavailable(f"redis: {exc}") from exc
        event_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        # Local subscribers hear it through pub/sub like everyone else's, so that
        # delivery stays in stream order however publishes interleave.
        return Event(channel, event_id, name, data, duplicate=bool(duplicate))

    async def history_after(self, channel: str, last_event_id: str) -> list[Event] | None:
        start = parse_id(last_event_id)
        if start is None:
            return None
        key = self._key(channel)
        try:
            # From the id itself: if it is still in the stream, nothing after it
            # was trimmed; if it isn't, it's too old, expired or never existed.
            entries = await self._read(key, format_id(start))
        except REDIS_ERRORS as exc:
            raise BroadcasterUnavailable(f"redis: {exc}") from exc
        if not entries or parse_id(entries[0].id) != start:
            return None
        return entries[1:]

    def is_after(self, event_id: str, other_id: str) -> bool:
        a, b = parse_id(event_id), parse_id(other_id)
        return a is not None and (b is None or a > b)

    # -- subscribing ---------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        subscriber: Subscriber,
        last_event_id: str | None = None,
        on_live: Callable[[bool], None] | None = None,
    ) -> bool:
        # The pub/sub subscription must be in place before history is read (or the
        # subscriber goes live), or events published in between would be lost.
        holder = _Holder()
        self._add(channel, holder)
        try:
            key = self._key(channel)
            if not await self._listener.wait_ready(key, SUBSCRIBE_WAIT):
                raise BroadcasterUnavailable("redis pub/sub is not connected")
            return await super().subscribe(channel, subscriber, last_event_id, on_live)
        finally:
            self._discard(channel, holder)

    def _channel_opened(self, channel: str) -> None:
        self._listener.open(self._key(channel))

    def _channel_closed(self, channel: str) -> None:
        self._listener.close(self._key(channel))

    async def _fetch_from(self, key: str, last_id: StreamId | None) -> list[Event]:
        return await self._read(key, "-" if last_id is None else format_id(last_id))

    async def _latest(self, key: str) -> StreamId:
        entries: Any = await self._commands.xrevrange(key, count=1)
        if not entries:
            return NO_ID
        return parse_id(entries[0][0].decode()) or NO_ID

    async def _read(self, key: str, start: str) -> list[Event]:
        # redis-py types entries loosely; without decode_responses they are
        # (bytes id, {bytes: bytes}) pairs.
        entries: Any = await self._commands.xrange(key, min=start)
        channel = self._to_channel(key)
        return [decode_entry(channel, entry) for entry in entries or ()]
