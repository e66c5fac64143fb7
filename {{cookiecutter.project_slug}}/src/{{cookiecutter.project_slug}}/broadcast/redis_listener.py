"""The worker's single Redis pub/sub connection, kept alive and gapless.

One listener per worker process holds one pub/sub connection, whatever the number
of local subscribers and channels. Channels are subscribed while they have local
subscribers. A supervisor runs the connection in sessions: when a session fails
(a dropped connection, Redis down, or a connection that stopped hearing its own
canary), it backs off with jitter, reconnects, resubscribes every channel and
backfills each from its stream after the last id it delivered, so local
subscribers see every event once, in order.

On a Redis Cluster one listener per node speaks sharded pub/sub (`SSUBSCRIBE`)
for the channels whose slots that node owns; `redis_cluster` runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import secrets
import socket
from collections import deque
from collections.abc import Callable, Collection, Coroutine
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import AskError

from .backend import Sink
from .redis_streams import NO_ID, StreamId, StreamStore, decode_message, parse_id

logger = logging.getLogger(__name__)

READ_TIMEOUT = 1.0  # seconds one get_message waits, so the loop notices failures
CONFIRM_TIMEOUT = 3.0  # a new connection must confirm its subscriptions within this
CANARY_INTERVAL = 1.0
CANARY_TIMEOUT = 3.0  # a canary not heard back within this means the connection is deaf
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0  # keeps recovery well within 10 s of Redis coming back
SUBSCRIBE_BATCH = 500
STOP_TIMEOUT = 3.0
RECANCEL_INTERVAL = 0.1  # how soon a task that outlived its cancellation is cancelled again

Verb = Literal["SUBSCRIBE", "UNSUBSCRIBE"]
SHARDED_KINDS = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}


class DeafConnection(Exception):
    """The pub/sub connection stopped delivering its own canary."""


class _Channel:
    """What the listener knows about one subscribed channel."""

    __slots__ = ("last_id", "ready")

    def __init__(self) -> None:
        # The newest id handed to local subscribers (or the stream's newest id
        # when the channel was opened): backfill starts after it.
        self.last_id: StreamId | None = None
        # Set while the current connection is subscribed and caught up.
        self.ready = asyncio.Event()


class PubSubListener:
    """Keeps one pub/sub connection subscribed to the channels that have local subscribers.

    `client` opens the pub/sub connection (`sharded`: sharded pub/sub, to one
    cluster node, whose canary name must hash to a slot of that node; a channel
    the node stops owning is reported to `on_moved`); the canary is published with
    `commands`, the path real publishes take. Channels are Redis names (stream
    keys); backfills read them from `store`. Live events go to `sink`, and so
    does the news that a backfill couldn't close a gap (Redis lost or trimmed
    the history).
    """

    def __init__(
        self,
        client: Redis,
        commands: Redis,
        store: StreamStore,
        sink: Sink,
        *,
        canary_prefix: str,
        sharded: bool = False,
        canary: str | None = None,
        on_moved: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._commands_client = commands
        self._store = store
        self._sink = sink
        self.canary = canary or (
            f"{canary_prefix}{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        )
        self._sharded = sharded
        self._on_moved = on_moved
        self._channels: dict[str, _Channel] = {}
        # Commands waiting for the writer, and per channel how many of its
        # SUBSCRIBE/UNSUBSCRIBE commands are not yet confirmed by Redis.
        self._commands: deque[tuple[Verb, str]] = deque()
        self._outstanding: dict[str, int] = {}
        self._wake_writer = asyncio.Event()
        self._canary_heard = 0.0
        self._supervisor: asyncio.Task[None] | None = None
        self._became_up = asyncio.Event()
        self.up = False
        # A connection attempt failed since the listener was last up: callers
        # shouldn't wait for readiness then, Redis is down.
        self.failing = False
        self._failed = asyncio.Event()  # set while `failing`, to wake waiters
        self._down_since = 0.0
        self._helper_failed: Exception | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self, wait: float) -> None:
        """Start the supervisor; wait up to `wait` seconds for the first connection."""
        self._supervisor = asyncio.create_task(self._supervise(), name="redis-pubsub")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._became_up.wait()
        if not self.up and wait > 0:
            logger.warning("redis is not reachable yet; the service is not ready until it is")

    async def stop(self) -> None:
        """Stop the supervisor and close the connection."""
        if self._supervisor is not None:
            await cancel_and_wait([self._supervisor], within=STOP_TIMEOUT)
        self.up = False
        await self._client.aclose()

    # -- channels ---------------------------------------------------------------

    def open(self, key: str, after: StreamId | None = None) -> None:
        """Subscribe `key` (its first local subscriber arrived).

        `after`: the last id already delivered (the channel moved here from
        another node's listener); the channel is backfilled from there.
        """
        channel = _Channel()
        channel.last_id = after
        self._channels[key] = channel
        self._queue("SUBSCRIBE", key)

    def close(self, key: str) -> StreamId | None:
        """Unsubscribe `key` (its last local subscriber left); the last id it delivered."""
        channel = self._channels.pop(key, None)
        if channel is None:
            return None
        self._queue("UNSUBSCRIBE", key)
        return channel.last_id

    def channel_keys(self) -> list[str]:
        """The channels subscribed here."""
        return list(self._channels)

    def last_id(self, key: str) -> StreamId | None:
        """The newest id of `key` delivered (or passed over) here; None when unknown."""
        channel = self._channels.get(key)
        return channel.last_id if channel is not None else None

    async def wait_ready(self, key: str, within: float) -> bool:
        """Wait until `key` is subscribed and caught up; False if Redis is down or it times out."""
        channel = self._channels.get(key)
        if channel is None:
            return False
        if channel.ready.is_set():
            return True
        if self.failing:
            return False
        ready = asyncio.ensure_future(channel.ready.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait([ready, failed], timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            failed.cancel()
        return channel.ready.is_set()

    def _queue(self, verb: Verb, key: str) -> None:
        self._commands.append((verb, key))
        self._outstanding[key] = self._outstanding.get(key, 0) + 1
        self._wake_writer.set()

    # -- the supervisor ------------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                await self._session()
                error: Exception = ConnectionError("pub/sub session ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect, whatever it was
                error = exc
            was_up = self._became_up.is_set()
            self._became_up.clear()
            for channel in self._channels.values():
                channel.ready.clear()
            if was_up:
                # Still counted as up: a dropped connection to a working Redis
                # is replaced (and backfilled) at once; only a failed attempt
                # to reconnect means Redis is down.
                failures = 0
                logger.warning(
                    "redis pub/sub connection lost (%s); reconnecting", _describe_error(error)
                )
            else:
                self.up = False
                failures += 1
                if not self.failing:
                    self.failing = True
                    self._failed.set()
                    self._down_since = loop.time()
                    logger.warning(
                        "redis unreachable (%s); not ready until it returns", _describe_error(error)
                    )
            # Full jitter: workers that lost Redis together don't all return at once.
            await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**failures)))

    def _now_up(self) -> None:
        self.up = True
        self._became_up.set()
        if self.failing:
            self.failing = False
            self._failed.clear()
            down_for = asyncio.get_running_loop().time() - self._down_since
            logger.warning("redis is back; ready again after %.1f s", down_for)

    async def _session(self) -> None:
        pubsub = self._client.pubsub()
        loop = asyncio.get_running_loop()
        try:
            # Start afresh: everything open is subscribed again, the canary last so
            # that its confirmation means every channel before it is caught up.
            self._commands.clear()
            self._outstanding.clear()
            for key in self._channels:
                self._queue("SUBSCRIBE", key)
            self._queue("SUBSCRIBE", self.canary)
            self._canary_heard = loop.time()
            self._helper_failed = None
            await pubsub.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py
            # The writer and the canary run beside the reader; the reader (this
            # task) notices their failure at its next read, within READ_TIMEOUT.
            helpers = [
                asyncio.create_task(self._guard(self._write(pubsub))),
                asyncio.create_task(self._guard(self._check_canary())),
            ]
            try:
                await self._read(pubsub)
            finally:
                await cancel_and_wait(helpers)
        finally:
            # redis-py finishes this teardown even when the task is cancelled. It
            # only closes this session's socket (without waiting for the close)
            # and returns it to the listener's own pool, so `stop` isn't held up.
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception as exc:  # handed to the reader, which ends the session
            self._helper_failed = exc

    async def _write(self, pubsub: PubSub) -> None:
        # One SSUBSCRIBE may only name channels of one slot: sharded, one each.
        batch_size = 1 if self._sharded else SUBSCRIBE_BATCH
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            while self._commands:
                verb, first = self._commands.popleft()
                batch = [first]
                # Consecutive commands of the same verb go out as one.
                while self._commands and self._commands[0][0] == verb and len(batch) < batch_size:
                    batch.append(self._commands.popleft()[1])
                await pubsub.execute_command(f"S{verb}" if self._sharded else verb, *batch)

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        confirm_by = loop.time() + CONFIRM_TIMEOUT
        while True:
            if self._helper_failed is not None:
                raise self._helper_failed
            try:
                message = await pubsub.get_message(timeout=READ_TIMEOUT)
            except AskError as exc:  # MOVED or ASK, sharded only: the connection is fine
                self._refused(exc.slot_id)
                continue
            if message is None:
                if not self._became_up.is_set() and loop.time() > confirm_by:
                    raise TimeoutError("redis did not confirm the subscriptions")
                continue
            await self._handle(message)

    def _refused(self, slot: int) -> None:
        # A node answers SSUBSCRIBE (or SUNSUBSCRIBE) with a redirection when it
        # no longer owns the channel's slot: the slot moved before the layout
        # said so. That command is done; the channel belongs on its new owner.
        key = next((k for k in self._outstanding if key_slot(k.encode()) == slot), None)
        if key is None or key == self.canary:
            raise ConnectionError(f"redis refused a subscription in slot {slot}")
        left = self._outstanding.pop(key) - 1
        if left > 0:
            self._outstanding[key] = left
        logger.info("redis refused %s: its slot moved; it is placed again", key)
        # Every channel of that slot is misplaced here, not only the refused one.
        for name, channel in self._channels.items():
            if key_slot(name.encode()) == slot:
                channel.ready.clear()
                if self._on_moved is not None:
                    self._on_moved(name)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self._sharded:
            kind = SHARDED_KINDS.get(kind, kind)
        key = message["channel"].decode()
        if kind == "unsubscribe" and key not in self._outstanding and key in self._channels:
            # Not asked for: the node gave the channel's slot away (a slot
            # migration or a failover); it must be subscribed on its new owner.
            self._channels[key].ready.clear()
            if self._on_moved is not None:
                self._on_moved(key)
            return
        if kind == "message":
            if key == self.canary:
                self._canary_heard = asyncio.get_running_loop().time()
            else:
                self._deliver(key, message["data"])
        elif kind in ("subscribe", "unsubscribe"):
            await self._confirmed(key, kind == "subscribe")

    def _deliver(self, key: str, payload: bytes) -> None:
        channel = self._channels.get(key)
        if channel is None or not channel.ready.is_set():
            return  # not ours yet: a backfill or the subscriber's replay covers it
        event = decode_message(self._store.channel(key), payload)
        event_id = parse_id(event.id) if event is not None else None
        if event is None or event_id is None:
            logger.warning("ignored a malformed message on %s", key)
            return
        if channel.last_id is not None and event_id <= channel.last_id:
            return  # already delivered by a backfill
        channel.last_id = event_id
        self._sink.deliver(event)

    async def _confirmed(self, key: str, subscribed: bool) -> None:
        left = self._outstanding.get(key, 1) - 1
        if left > 0:
            self._outstanding[key] = left
            return  # a later command for this channel decides its state
        self._outstanding.pop(key, None)
        if key == self.canary:
            if subscribed:
                self._now_up()
            return
        channel = self._channels.get(key)
        if not subscribed or channel is None or channel.ready.is_set():
            return
        if channel.last_id is None:
            # A newly opened channel: live delivery starts here, and a later
            # backfill starts after whatever the stream holds now.
            channel.last_id = await self._store.latest(key)
        else:
            await self._backfill(key, channel)
        if self._channels.get(key) is channel:
            channel.ready.set()

    async def _backfill(self, key: str, channel: _Channel) -> None:
        # Subscribed again before reading: whatever is published from here on
        # arrives as a message, and whatever came before is in the stream.
        last_id = channel.last_id
        missed = await self._store.read_from(key, last_id)
        if missed and parse_id(missed[0].id) == last_id:
            missed = missed[1:]
        elif last_id not in (None, NO_ID):
            # The last delivered id is gone: trimmed, expired, or Redis lost its
            # data. Subscribers hear it (a resync) before whatever the stream holds now.
            logger.warning(
                "can't backfill %s without a gap: its history moved on; subscribers resync", key
            )
            self._sink.lost(self._store.channel(key))
            # A new Redis may even number below the old one: take the stream as it is.
            missed = await self._store.read_from(key, None)
            channel.last_id = None
        if missed:
            logger.info("backfilled %d events on %s after reconnecting", len(missed), key)
        for event in missed:
            event_id = parse_id(event.id)
            if event_id is None or (channel.last_id is not None and event_id <= channel.last_id):
                continue
            channel.last_id = event_id
            self._sink.deliver(event)

    async def _check_canary(self) -> None:
        loop = asyncio.get_running_loop()
        for count in itertools.count():
            await asyncio.sleep(CANARY_INTERVAL)
            if not self._became_up.is_set():
                continue
            if loop.time() - self._canary_heard > CANARY_TIMEOUT:
                raise DeafConnection(f"canary not heard for {CANARY_TIMEOUT} s")
            if self._sharded:
                await self._commands_client.spublish(self.canary, str(count))
            else:
                await self._commands_client.publish(self.canary, str(count))


async def cancel_and_wait(
    tasks: Collection[asyncio.Task[Any]], within: float | None = None
) -> bool:
    """Cancel `tasks` and wait until every one has ended, or `within` seconds; whether all did.

    A task still running after its cancellation is cancelled again. On Python
    3.11, `asyncio.wait_for` (redis-py wraps socket writes in it) drops a
    cancellation that arrives just as the write completes: the task carries on,
    and a session's writer would wait for its next command forever, so the
    session never ended and never reconnected.
    """
    loop = asyncio.get_running_loop()
    deadline = None if within is None else loop.time() + within
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        wait = RECANCEL_INTERVAL
        if deadline is not None:
            wait = min(wait, deadline - loop.time())
            if wait <= 0:
                return False
        _, pending = await asyncio.wait(pending, timeout=wait)
    return True


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
