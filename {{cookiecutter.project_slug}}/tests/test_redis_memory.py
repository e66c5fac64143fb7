"""Redis under `maxmemory` with `volatile-lru` (as compose runs it): history is evicted, not writes refused.

A Redis server of this test's own gets a small `maxmemory`; a publisher sprays
many channels. Publishing keeps working (the evicted keys are channel history,
which has a TTL), the channels published to lately keep their history, and a
resume into evicted history is answered as unrecoverable (a resync).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster
from {{ cookiecutter.project_slug }}.broadcast.redis import RedisBackend

from redis_server import RedisServerProcess, start_redis_server

HEADROOM = 2 * 1024 * 1024
PAYLOAD = b'"' + b"x" * 4000 + b'"'
CHANNELS = 2000  # 8 MB of history: four times the headroom


@pytest.fixture
def bounded_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A Redis-protocol server of this test's own, configured as compose runs Redis."""
    server = start_redis_server(tmp_path / "redis")
    admin = redis.Redis.from_url(server.url)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + HEADROOM)
    admin.config_set("maxmemory-policy", "volatile-lru")
    # Redis's LRU is approximate (5 keys sampled per eviction by default), so the
    # oldest channel could outlive newer ones; the most samples make it near exact.
    admin.config_set("maxmemory-samples", 64)
    admin.close()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def bounded(bounded_redis: RedisServerProcess) -> AsyncIterator[Broadcaster]:
    """A broadcaster on that server."""
    broadcaster = Broadcaster(RedisBackend(bounded_redis.url, history_size=1000, history_ttl=3600))
    await broadcaster.start()
    try:
        yield broadcaster
    finally:
        await broadcaster.stop()


async def test_history_is_evicted_under_maxmemory_and_resumes_into_it_resync(
    bounded: Broadcaster, bounded_redis: RedisServerProcess
) -> None:
    """Every publish succeeds; the earliest channel's resume is unrecoverable, the latest's whole."""
    first = await bounded.publish("spray:0", "message", PAYLOAD)
    ids = [first.id]
    for n in range(1, CHANNELS):
        ids.append((await bounded.publish(f"spray:{n}", "message", PAYLOAD)).id)
    admin = redis.Redis.from_url(bounded_redis.url)
    evicted = int(admin.info("stats")["evicted_keys"])
    admin.close()
    assert evicted > 0, "maxmemory was never reached: the test would prove nothing"
    assert await bounded.history_after("spray:0", first.id) is None  # resync
    assert await bounded.history_after(f"spray:{CHANNELS - 1}", ids[-1]) == []
