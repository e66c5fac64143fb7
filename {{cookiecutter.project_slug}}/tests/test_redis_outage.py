"""Redis stops and comes back under a running service: honest while down, live again after.

The Redis server here is one this test starts on its own port (not the session's),
so that it can be killed and restarted on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.broadcast.redis_listener import cancel_and_wait

from conftest import ServerFactory, TokenFactory
from redis_clients import (
    Subscriber,
    answers_with,
    close_all,
    fresh_connection_client,
    publish,
    subscribe_many,
)
from redis_server import RedisServerProcess, start_redis_server
from servers import ServerProcess, wait_until

logger = logging.getLogger(__name__)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A Redis-protocol server of this test's own, killed by pid afterwards."""
    server = start_redis_server(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


async def three_more_heartbeats(subscriber: Subscriber) -> None:
    """Wait for three more heartbeats on `subscriber` (HEARTBEAT_INTERVAL is 0.2 s)."""
    target = subscriber.heartbeats + 3
    await subscriber.wait_until(lambda: subscriber.heartbeats >= target, timeout=5)


async def test_redis_outage_is_reported_and_recovered_on_open_connections(
    start_server: ServerFactory, own_redis: RedisServerProcess, make_token: TokenFactory
) -> None:
    """Down: readyz and publish 503, streams stay open with heartbeats. Back: live on the same streams.

    The restarted Redis has lost the history (it keeps nothing on disk), so every
    stream is told so with a resync before the first event after the outage.
    """
    server: ServerProcess = start_server(workers=2, REDIS_URL=own_redis.url)
    ch = f"outage-test:{uuid.uuid4().hex}"
    token = make_token()
    subscribers: list[Subscriber] = await subscribe_many(server.port, [ch] * 6, token)
    events_url = f"{server.url}/channels/{ch}/events"
    body = {"event": "message", "data": "during"}
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with fresh_connection_client() as http:
            assert (await publish(http, server.url, ch, "before", token)).status_code == 202
            await asyncio.gather(*(s.wait_for_events(1, timeout=10) for s in subscribers))

            own_redis.stop()
            stopped = time.monotonic()

            async def down_everywhere() -> bool:
                # Fresh connections land on either worker: each must say it's down.
                for _ in range(6):
                    ready = await http.get(f"{server.url}/readyz")
                    published = await http.post(events_url, json=body, headers=headers)
                    metrics = (await http.get(f"{server.url}/metrics")).text
                    if (ready.status_code, published.status_code) != (503, 503) or (
                        "realtime_broadcaster_up 0.0" not in metrics
                    ):
                        return False
                return True

            while not await down_everywhere():
                assert time.monotonic() - stopped < 5, "not reported down within 5 s"
                await asyncio.sleep(0.05)
            # The connections stay open and keep their heartbeats (HEARTBEAT_INTERVAL=0.2).
            await asyncio.gather(*(three_more_heartbeats(s) for s in subscribers))
            assert not any(s.closed for s in subscribers)

            own_redis.start()
            restarted = time.monotonic()
            ready = answers_with(http, f"{server.url}/readyz", 200)
            await wait_until(ready, 10, "/readyz never answered 200 after redis restarted")
            logger.warning("ready again %.2f s after redis restarted", time.monotonic() - restarted)
            # A worker that isn't back yet backfills this event once it is.
            assert (await publish(http, server.url, ch, "after", token)).status_code == 202
            await asyncio.gather(*(s.wait_for_events(3, timeout=10) for s in subscribers))
        for subscriber in subscribers:
            assert [(e.name, e.data) for e in subscriber.events] == [
                ("message", "before"),
                ("resync", {}),
                ("message", "after"),
            ]
            assert not subscriber.closed
    finally:
        await close_all(subscribers)


async def test_a_task_that_outlives_its_cancellation_is_cancelled_again() -> None:
    """A reconnecting session ends its helpers for sure: one that swallowed a cancellation
    (`asyncio.wait_for` on Python 3.11 does, as a write completes) is cancelled again."""
    swallowed = asyncio.Event()

    async def writer() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.set()  # carries on, as after a write wait_for returned anyway
        await asyncio.Event().wait()  # the next command, which never comes

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], within=5)
    assert swallowed.is_set() and task.cancelled()


async def test_cancel_and_wait_gives_up_on_a_task_that_never_ends() -> None:
    """`within` bounds the wait (a stop under a deadline); the answer says the task lives on."""
    stubborn = True

    async def never_ends() -> None:
        while stubborn:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)

    task = asyncio.create_task(never_ends())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], within=0.3) is False
    assert not task.done()
    stubborn = False
    assert await cancel_and_wait([task], within=5)
