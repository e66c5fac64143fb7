"""Subscribers and helpers for the Redis tests against real multi-worker servers.

A `Subscriber` is one client connection following one channel over the
transport this service was rendered with (SSE when it has both).
It records every event and heartbeat in the background, so a test can hold
hundreds of them while it publishes, kills connections or stops Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
{% if cookiecutter.transport == "websocket" %}
import json
{% endif %}
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
import redis
{% if cookiecutter.transport == "websocket" %}
from websockets.exceptions import WebSocketException

from ws_client import open_ws

TRANSPORT = "websocket"
{% else %}

from sse_client import open_stream

TRANSPORT = "sse"
{% endif %}


@dataclass(frozen=True)
class Received:
    """One event as a client got it, with the (monotonic) time it arrived."""

    id: str
    name: str
    data: Any
    at: float


class Subscriber:
    """One connection following `channel`; `events` fills in as they arrive."""

    def __init__(self, port: int, channel: str, token: str) -> None:
        self.port = port
        self.channel = channel
        self.token = token
        self.events: list[Received] = []
        self.heartbeats = 0
        self.closed = False  # the server ended the connection
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.get_running_loop().create_future()

    async def open(self, timeout: float = 10) -> Subscriber:
        """Connect, subscribe, and return once the subscription is live."""
        self._task = asyncio.create_task(self._read())
        async with asyncio.timeout(timeout):
            await self._opened
        return self

    async def wait_for_events(self, count: int, timeout: float) -> list[Received]:
        """Wait until at least `count` events have arrived."""
        await self.wait_until(lambda: len(self.events) >= count, timeout)
        return self.events

    async def wait_until(self, condition: Any, timeout: float) -> None:
        """Wait until `condition()` holds (checked whenever something arrives).

        A timeout says which channel it was and what had arrived by then.
        """
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    if self.closed:
                        raise EOFError(f"the server closed the {TRANSPORT} connection")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.channel}: not so within {timeout} s; {self.heartbeats} heartbeats, "
                f"{len(self.events)} events: {self.payloads}"
            ) from None

    @property
    def ids(self) -> list[str]:
        """The id of every event so far, in arrival order."""
        return [event.id for event in self.events]

    @property
    def payloads(self) -> list[Any]:
        """The data of every event so far, in arrival order."""
        return [event.data for event in self.events]

    async def close(self) -> None:
        """Drop the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _record(self, event_id: str, name: str, data: Any) -> None:
        self.events.append(Received(event_id, name, data, time.monotonic()))
        self._changed.set()

    def _heartbeat(self) -> None:
        self.heartbeats += 1
        self._changed.set()

    def _opened_now(self) -> None:
        if not self._opened.done():
            self._opened.set_result(None)

    def _ended(self, error: BaseException | None = None) -> None:
        self.closed = True
        if not self._opened.done():
            self._opened.set_exception(error or EOFError("connection ended before it opened"))
        self._changed.set()

{% if cookiecutter.transport != "websocket" %}
    async def _read(self) -> None:
        try:
            stream = await open_stream(self.port, self.channel, token=self.token, timeout=10)
        except OSError as exc:
            self._ended(exc)
            return
        try:
            if stream.status != 200:
                raise ConnectionError(f"stream refused: {stream.status} {stream.body!r}")
            while (frame := await stream.next_frame(timeout=None)) is not None:
                for _ in frame.comments:
                    self._heartbeat()
                if frame.retry is not None or frame.is_event:
                    self._opened_now()
                if frame.is_event:
                    self._record(frame.id or "", frame.event or "message", frame.json())
        except (OSError, ValueError) as exc:
            self._ended(exc)
            return
        finally:
            await stream.close()
        self._ended()
{% else %}
    async def _read(self) -> None:
        try:
            async with await open_ws(self.port, header_token=self.token) as ws:
                await ws.send(json.dumps({"type": "subscribe", "channel": self.channel}))
                async for raw in ws:
                    frame = json.loads(raw)
                    kind = frame.get("type")
                    if kind == "message":
                        self._record(frame["id"], frame["event"], frame["data"])
                    elif kind == "ping":
                        self._heartbeat()
                        await ws.send('{"type":"pong"}')
                    elif kind == "subscribed":
                        if self._opened.done() and frame.get("recovered") is False:
                            self._record("", "resync", {})  # continuity lost: as SSE's `resync`
                        self._opened_now()
                    elif kind == "error":
                        raise ConnectionError(f"subscribe refused: {frame}")
        except (OSError, WebSocketException) as exc:
            self._ended(exc)
            return
        self._ended()
{% endif %}


async def subscribe_many(port: int, channels: list[str], token: str) -> list[Subscriber]:
    """One live subscriber per entry of `channels`, each over its own connection.

    Opened one after another: a burst of connections would all be accepted by
    whichever worker woke first, and the tests want both workers to serve some.
    """
    subscribers = []
    for channel in channels:
        subscribers.append(await Subscriber(port, channel, token).open())
    return subscribers


async def close_all(subscribers: list[Subscriber]) -> None:
    """Close every subscriber."""
    await asyncio.gather(*(s.close() for s in subscribers))


async def publish(
    http: httpx2.AsyncClient,
    base_url: str,
    channel: str,
    data: Any,
    token: str,
    idempotency_key: str | None = None,
) -> httpx2.Response:
    """POST one event; the response as it came.

    Retries after a 503 must pass an `idempotency_key`: a 503 may come after the event
    was stored (a timeout), and only the key makes the retry publish it once.
    """
    headers = {"Authorization": f"Bearer {token}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await http.post(
        f"{base_url}/channels/{quote(channel)}/events",
        json={"event": "message", "data": data},
        headers=headers,
    )


def answers_with(http: httpx2.AsyncClient, url: str, status: int) -> Callable[[], Awaitable[bool]]:
    """A condition for `wait_until`: does a GET of `url` answer `status` now?"""

    async def answers() -> bool:
        return (await http.get(url)).status_code == status

    return answers


def fresh_connection_client() -> httpx2.AsyncClient:
    """An HTTP client that opens a new connection per request, so each lands on any worker."""
    return httpx2.AsyncClient(limits=httpx2.Limits(max_keepalive_connections=0), timeout=10)


def pubsub_clients(admin: redis.Redis, pids: set[int]) -> list[dict[str, Any]]:
    """The pub/sub connections that the given processes hold (by their client names)."""
    found = []
    for client in admin.client_list(_type="pubsub"):
        name = str(client.get("name", ""))
        pid = name.rpartition(":")[2]
        if ":pubsub:" in name and pid.isdigit() and int(pid) in pids:
            found.append(client)
    return found


def subscriber_connections(admin: redis.Redis, key: str) -> int:
    """How many connections are subscribed to the pub/sub channel `key`."""
    ((_, count),) = admin.pubsub_numsub(key)
    return int(count)
