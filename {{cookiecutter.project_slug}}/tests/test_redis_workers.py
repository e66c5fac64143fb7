"""`uvicorn --workers 2` with the Redis broadcaster: fan-out, connections, recovery.

Every subscriber here is a real client connection (SSE when the service has it,
else WebSocket) to a real two-worker server, and every publish a real HTTP request
on a fresh connection, so that both workers publish and both serve subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Iterator

import pytest
import redis

from {{ cookiecutter.project_slug }}.broadcast.redis_streams import key_for

from conftest import ServerFactory, TokenFactory
from redis_clients import (
    TRANSPORT,
    Subscriber,
    close_all,
    fresh_connection_client,
    publish,
    pubsub_clients,
    subscribe_many,
    subscriber_connections,
)
from servers import ServerProcess, channel_name, wait_for, worker_pids

logger = logging.getLogger(__name__)


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client for inspecting and disturbing the server."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def two_workers(start_server: ServerFactory, admin: redis.Redis) -> ServerProcess:
    """A real `uvicorn --workers 2` server, both workers connected to Redis."""
    # Short-lived history: the Redis server may be a shared one.
    server = start_server(workers=2, HISTORY_TTL="600")
    wait_for(lambda: len(worker_pids(server.pid)) == 2, 20, "two workers never started")
    pids = worker_pids(server.pid)
    wait_for(lambda: len(pubsub_clients(admin, pids)) == 2, 20, "both workers never reached Redis")
    return server


async def open_on_both_workers(
    server: ServerProcess, admin: redis.Redis, channels: list[str], token: str
) -> list[Subscriber]:
    """Open one subscriber per entry of `channels`, on connections both workers serve.

    Which worker accepts a connection is the kernel's choice; should every one
    land on the same worker, a few more are opened on the busiest channel.
    """
    subscribers = await subscribe_many(server.port, channels, token)
    busiest = max(set(channels), key=channels.count)
    # A worker subscribes a channel once, however many of its clients follow it.
    for _ in range(50):
        if subscriber_connections(admin, key_for(busiest)) == 2:
            return subscribers
        subscribers += await subscribe_many(server.port, [busiest], token)
    await close_all(subscribers)
    raise AssertionError("every connection went to the same worker")


async def test_every_subscriber_on_every_worker_gets_every_event_in_order(
    two_workers: ServerProcess, admin: redis.Redis, make_token: TokenFactory
) -> None:
    """100 subscribers over separate connections each receive all events, in publish order."""
    ch = channel_name()
    token = make_token()
    subscribers = await open_on_both_workers(two_workers, admin, [ch] * 100, token)
    total = 200
    sent_at: list[float] = []
    loop = asyncio.get_running_loop()
    try:
        async with fresh_connection_client() as http:
            started = loop.time()
            for i in range(total):
                sent_at.append(loop.time())
                response = await publish(http, two_workers.url, ch, i, token)
                assert response.status_code == 202, response.text
            await asyncio.gather(*(s.wait_for_events(total, timeout=30) for s in subscribers))
            elapsed = loop.time() - started
        for subscriber in subscribers:
            assert subscriber.payloads == list(range(total))
        latencies = sorted(s.events[i].at - sent_at[i] for s in subscribers for i in range(total))
        p99 = latencies[int(len(latencies) * 0.99)]
        # Reported, not asserted: timing depends on the machine.
        logger.warning(
            "cross-worker fan-out over %s: %d events x %d subscribers in %.2f s "
            "(%.0f events/s published, %.0f deliveries/s); latency median %.1f ms, p99 %.1f ms",
            TRANSPORT,
            total,
            len(subscribers),
            elapsed,
            total / elapsed,
            total * len(subscribers) / elapsed,
            statistics.median(latencies) * 1000,
            p99 * 1000,
        )
    finally:
        await close_all(subscribers)


@pytest.mark.parametrize("count", [10, 200])
async def test_one_pubsub_connection_per_worker(
    two_workers: ServerProcess, admin: redis.Redis, make_token: TokenFactory, count: int
) -> None:
    """Each worker holds exactly one pub/sub connection, with 10 subscribers as with 200."""
    pids = worker_pids(two_workers.pid)
    assert len(pubsub_clients(admin, pids)) == 2
    channels = [channel_name() for _ in range(max(count // 10, 1))]
    wanted = [channels[i % len(channels)] for i in range(count)]
    subscribers = await open_on_both_workers(two_workers, admin, wanted, make_token())
    try:
        held = pubsub_clients(admin, pids)
        assert len(held) == 2
        assert {int(client["name"].rpartition(":")[2]) for client in held} == pids
    finally:
        await close_all(subscribers)


async def test_killed_pubsub_connections_lose_and_repeat_nothing(
    two_workers: ServerProcess, admin: redis.Redis, make_token: TokenFactory
) -> None:
    """CLIENT KILL of the workers' pub/sub connections while publishing: no gap, no duplicate."""
    ch = channel_name()
    token = make_token()
    subscribers = await open_on_both_workers(two_workers, admin, [ch] * 20, token)
    pids = worker_pids(two_workers.pid)
    total = 300
    try:
        async with fresh_connection_client() as http:

            async def keep_publishing() -> None:
                for i in range(total):
                    response = await publish(http, two_workers.url, ch, i, token)
                    assert response.status_code == 202, response.text

            publishing = asyncio.create_task(keep_publishing())
            kills = 0
            while not publishing.done():
                # Kill every pub/sub connection of the server's workers (only
                # theirs: the Redis server may be shared with other test runs).
                for client in pubsub_clients(admin, pids):
                    admin.client_kill_filter(_id=client["id"])
                kills += 1
                await asyncio.sleep(0.1)
            await publishing
        assert kills >= 3, "publishing was over before the connections were killed repeatedly"
        await asyncio.gather(*(s.wait_for_events(total, timeout=30) for s in subscribers))
        for subscriber in subscribers:
            assert subscriber.payloads == list(range(total))
            assert len({event.id for event in subscriber.events}) == total
        wait_for(lambda: len(pubsub_clients(admin, pids)) == 2, 10, "workers did not reconnect")
    finally:
        await close_all(subscribers)
