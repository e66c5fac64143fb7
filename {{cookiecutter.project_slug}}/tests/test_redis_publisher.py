"""Publishing from Python while Redis is down: an exception, as HTTP answers 503."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from {{ cookiecutter.project_slug }}.broadcast import BroadcasterUnavailable
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.publisher import Publisher
from {{ cookiecutter.project_slug }}.settings import Settings

from conftest import TokenFactory
from redis_server import RedisServerProcess, start_redis_server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A Redis-protocol server of this test's own, killed by pid afterwards."""
    server = start_redis_server(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


async def test_publish_raises_while_redis_is_down_and_works_again_after(
    settings_factory: Callable[..., Settings],
    own_redis: RedisServerProcess,
    make_token: TokenFactory,
) -> None:
    """Down: `BroadcasterUnavailable` (and HTTP 503), never an id for a lost event. Back: ids."""
    app = create_app(settings_factory(redis_url=own_redis.url))
    publisher = Publisher.of(app)
    headers = {"Authorization": f"Bearer {make_token()}"}
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        first = await publisher.publish("jobs:done", {"n": 1})
        own_redis.stop()
        async with asyncio.timeout(10):
            with pytest.raises(BroadcasterUnavailable, match="redis"):
                await publisher.publish("jobs:done", {"n": 2})
            refused = await http.post(
                "/channels/jobs:done/events", json={"data": 3}, headers=headers
            )
        assert refused.status_code == 503
        own_redis.start()
        async with asyncio.timeout(20):
            while True:
                try:
                    later = await publisher.publish("jobs:done", {"n": 4})
                    break
                except BroadcasterUnavailable:
                    await asyncio.sleep(0.1)  # polling for Redis to be back, with a deadline
        assert later != first  # a new event with an id of its own, not a replay of the first
