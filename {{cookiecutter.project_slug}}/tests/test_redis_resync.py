"""Redis comes back without the history: the listener can't backfill, so subscribers are told.

A Redis server of this test's own is killed and started again empty (it keeps
nothing on disk). Subscribers of a channel whose last delivered event is gone
hear `lost` (a resync on their transport) before the next live event; a
subscriber of a channel that had no events has nothing to resync.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster
from {{ cookiecutter.project_slug }}.broadcast.redis import RedisBackend

from redis_server import RedisServerProcess, start_redis_server
from test_broadcaster import Recorder


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A Redis-protocol server of this test's own, killed by pid afterwards."""
    server = start_redis_server(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


async def _wait(condition: object, timeout: float, message: str) -> None:
    assert callable(condition)
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(message) from None


async def test_subscribers_hear_lost_continuity_before_the_next_event(
    own_redis: RedisServerProcess,
) -> None:
    """Redis restarted empty: `lost` for the channel with history, then live events again."""
    broadcaster = Broadcaster(RedisBackend(own_redis.url, history_size=100, history_ttl=3600))
    await broadcaster.start()
    busy, quiet = f"busy:{uuid.uuid4().hex}", f"quiet:{uuid.uuid4().hex}"
    on_busy, on_quiet = Recorder(), Recorder()
    try:
        await broadcaster.subscribe(busy, on_busy)
        await broadcaster.subscribe(quiet, on_quiet)
        await broadcaster.publish(busy, "message", b"1")
        await _wait(lambda: len(on_busy.events) == 1, 10, "the first event never arrived")

        own_redis.stop()
        own_redis.start()
        await _wait(lambda: on_busy.lost_channels == [busy], 15, "no resync after the restart")
        await _wait(broadcaster.is_up, 15, "not up again")
        after = await broadcaster.publish(busy, "message", b"2")
        await _wait(lambda: len(on_busy.events) == 2, 10, "no live event after the restart")
        assert on_busy.events[-1].id == after.id
        assert on_quiet.lost_channels == []  # nothing was delivered there: nothing missed
    finally:
        await broadcaster.stop()
