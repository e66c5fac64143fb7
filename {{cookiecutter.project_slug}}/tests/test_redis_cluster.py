"""`REDIS_CLUSTER=true` against a real Redis Cluster: placement, fan-out, resume, outages.

The cluster is `REDIS_CLUSTER_NODES` when set, else three `redis-server` nodes
the tests start (see `redis_cluster_nodes`); the node-kill test always starts
its own, durable one, so that killing a node disturbs no other test.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx2
import pytest
from redis.crc import key_slot

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster, create_broadcaster
from {{ cookiecutter.project_slug }}.broadcast.redis_streams import key_for
from {{ cookiecutter.project_slug }}.settings import Settings

from conftest import ServerFactory, TokenFactory
from redis_clients import (
    answers_with,
    close_all,
    fresh_connection_client,
    publish,
    subscribe_many,
)
from redis_cluster_nodes import Cluster, start_cluster
from servers import wait_until, worker_pids
from test_broadcaster import Recorder, publish_n

logger = logging.getLogger(__name__)

Address = tuple[str, int]


def cluster_env(cluster: Cluster) -> dict[str, str]:
    """What a service needs to use `cluster` (short-lived history: it may be shared).

    Heartbeats slower than the other tests': a WebSocket client that answers no ping
    for two intervals is closed, and this machine also runs several Redis nodes.
    """
    return {
        "REDIS_URL": cluster.url,
        "REDIS_CLUSTER": "true",
        "HISTORY_TTL": "600",
        "HEARTBEAT_INTERVAL": "1",
    }


def pubsub_connections(cluster: Cluster, address: Address, pids: set[int]) -> Counter[int]:
    """How many pub/sub connections each of `pids` holds to one node (by client name)."""
    counts: Counter[int] = Counter()
    with cluster.node(address) as node:
        for client in node.client_list():
            name = str(client.get("name", ""))
            pid = name.rpartition(":")[2]
            if ":pubsub:" in name and pid.isdigit() and int(pid) in pids:
                counts[int(pid)] += 1
    return counts


@pytest.fixture
async def make_broadcaster(
    settings_factory: Callable[..., Settings], redis_cluster: Cluster
) -> AsyncIterator[Callable[[], Awaitable[Broadcaster]]]:
    """Start in-process cluster broadcasters; all stopped after the test."""
    started: list[Broadcaster] = []

    async def make() -> Broadcaster:
        instance = create_broadcaster(
            settings_factory(redis_url=redis_cluster.url, redis_cluster=True, history_ttl=600)
        )
        await instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.stop()


async def test_each_channel_lives_in_one_slot(
    make_broadcaster: Callable[[], Awaitable[Broadcaster]], redis_cluster: Cluster
) -> None:
    """A channel's stream sits on the primary that owns its hash tag's slot, whichever node the URL names."""
    broadcaster = await make_broadcaster()
    placed = redis_cluster.channels_on_every_primary(f"cluster-test:{uuid.uuid4().hex}:")
    assert len(placed) == len(redis_cluster.primaries()) >= 3
    for address, (name,) in placed.items():
        await publish_n(broadcaster, name, 2)
        key = key_for(name, cluster=True)
        assert key.endswith("{" + name + "}")
        with redis_cluster.node(address) as node:
            assert node.xlen(key) == 2


async def test_resume_is_exact_and_a_lost_id_resyncs(
    make_broadcaster: Callable[[], Awaitable[Broadcaster]], redis_cluster: Cluster
) -> None:
    """On every node: resuming replays exactly what followed the id; an id the stream lacks gives recovered=False."""
    broadcaster = await make_broadcaster()
    placed = redis_cluster.channels_on_every_primary(f"cluster-test:{uuid.uuid4().hex}:")
    for (name,) in placed.values():
        published = await publish_n(broadcaster, name, 5)
        resumed = Recorder()
        assert await broadcaster.subscribe(name, resumed, last_event_id=published[1].id) is True
        assert [e.id for e in resumed.events] == [e.id for e in published[2:]]
        live = await publish_n(broadcaster, name, 1, start=5)
        await resumed.wait_for(4)
        assert resumed.events[-1].id == live[0].id
        assert resumed.payloads == [2, 3, 4, 5]

        lost = Recorder()
        assert await broadcaster.subscribe(name, lost, last_event_id="1-0") is False
        assert lost.events == []


async def test_a_repeated_idempotency_key_publishes_once_on_every_node(
    make_broadcaster: Callable[[], Awaitable[Broadcaster]], redis_cluster: Cluster
) -> None:
    """On every node: a key seen again returns the first id and stores nothing (one slot, one script)."""
    broadcaster = await make_broadcaster()
    placed = redis_cluster.channels_on_every_primary(f"cluster-test:{uuid.uuid4().hex}:")
    for address, (name,) in placed.items():
        first = await broadcaster.publish(name, "message", b"1", idempotency_key="retry-1")
        again = await broadcaster.publish(name, "message", b"1", idempotency_key="retry-1")
        other = await broadcaster.publish(name, "message", b"2", idempotency_key="retry-2")
        assert again.id == first.id and not first.duplicate and again.duplicate
        assert other.id != first.id
        with redis_cluster.node(address) as node:
            assert node.xlen(key_for(name, cluster=True)) == 2


async def test_two_workers_fan_out_over_every_node(
    start_server: ServerFactory, make_token: TokenFactory, redis_cluster: Cluster
) -> None:
    """Two workers, channels on every primary: every subscriber gets every event once, in order,
    and each worker holds exactly one pub/sub connection per node whatever the channel count."""
    server = start_server(workers=2, **cluster_env(redis_cluster))
    pids: set[int] = set()
    primaries = redis_cluster.primaries()

    def counted() -> bool:
        pids.clear()
        pids.update(worker_pids(server.pid))
        return len(pids) == 2 and all(
            pubsub_connections(redis_cluster, address, pids) == Counter(dict.fromkeys(pids, 1))
            for address in primaries
        )

    async def one_connection_per_worker_per_node() -> bool:
        # In a thread: open subscribers must keep answering heartbeats meanwhile.
        return await asyncio.to_thread(counted)

    await wait_until(one_connection_per_worker_per_node, 20, "workers never listened to every node")
    placed = redis_cluster.channels_on_every_primary(
        f"cluster-test:{uuid.uuid4().hex}:", per_node=3
    )
    channels = [name for names in placed.values() for name in names]
    token = make_token()
    # Three subscribers per channel, opened one by one: both workers serve some.
    subscribers = await subscribe_many(server.port, channels * 3, token)
    try:
        async with fresh_connection_client() as http:
            for i in range(10):
                for name in channels:
                    assert (await publish(http, server.url, name, i, token)).status_code == 202
        await asyncio.gather(*(s.wait_for_events(10, timeout=20) for s in subscribers))
        for subscriber in subscribers:
            assert subscriber.payloads == list(range(10)), subscriber.channel
            assert len({e.id for e in subscriber.events}) == 10
        # Still one per worker per node, with nine channels followed on each.
        await wait_until(
            one_connection_per_worker_per_node, 5, "a worker opened a second connection"
        )
    finally:
        await close_all(subscribers)


async def test_a_killed_node_is_unready_and_backfilled_when_it_returns(
    tmp_path: Path, start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Kill the primary owning a channel: publish and /readyz answer 503. Restart it: ready
    again, and every subscriber, on every node, gets every event once, in order."""
    cluster = start_cluster(tmp_path / "cluster", durable=True)
    try:
        server = start_server(workers=2, **cluster_env(cluster))
        placed = cluster.channels_on_every_primary(f"cluster-kill:{uuid.uuid4().hex}:")
        victim = sorted(placed)[1]
        (victim_channel,) = placed[victim]
        channels = [name for (name,) in placed.values()]
        token = make_token()
        subscribers = await subscribe_many(server.port, channels * 2, token)
        try:
            async with fresh_connection_client() as http:
                for name in channels:
                    assert (await publish(http, server.url, name, 0, token)).status_code == 202
                await asyncio.gather(*(s.wait_for_events(1, timeout=10) for s in subscribers))

                # In a thread: the subscribers must keep answering heartbeats meanwhile.
                await asyncio.to_thread(cluster.process(victim).stop)

                async def down() -> bool:
                    ready = await http.get(f"{server.url}/readyz")
                    published = await publish(http, server.url, victim_channel, "lost", token)
                    return (ready.status_code, published.status_code) == (503, 503)

                await wait_until(down, 10, "a dead node's channel was not reported unavailable")

                await asyncio.to_thread(cluster.process(victim).start)
                since = time.monotonic()
                ready = answers_with(http, f"{server.url}/readyz", 200)
                await wait_until(ready, 15, "/readyz never answered 200 after the node restarted")
                logger.warning(
                    "ready again %.2f s after the node restarted", time.monotonic() - since
                )

                for name in channels:
                    # Other nodes may take a moment more to see it back (CLUSTERDOWN).
                    async def accepted(name: str = name) -> bool:
                        # A 503 may follow a stored event (a timeout): retry as a client must.
                        key = f"{name}/1"
                        response = await publish(http, server.url, name, 1, token, key)
                        return response.status_code == 202

                    await wait_until(accepted, 15, f"publishing to {name} never recovered")
            await asyncio.gather(*(s.wait_for_events(2, timeout=15) for s in subscribers))
            for subscriber in subscribers:
                assert subscriber.payloads == [0, 1], (subscriber.channel, subscriber.ids)
                assert not subscriber.closed
        finally:
            await close_all(subscribers)
    finally:
        cluster.stop()


async def test_not_a_cluster_is_not_ready(
    start_server: ServerFactory, make_token: TokenFactory, redis_url: str
) -> None:
    """REDIS_CLUSTER=true pointed at a plain Redis: /readyz and publish answer 503, the server runs."""
    server = start_server(REDIS_URL=redis_url, REDIS_CLUSTER="true")
    async with httpx2.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{server.url}/readyz")).status_code == 503
        response = await publish(http, server.url, "cluster-test:plain", 1, make_token())
        assert response.status_code == 503
    assert "can't read the redis cluster layout" in server.output()


async def test_a_failed_primary_is_replaced_by_its_replica(
    tmp_path: Path, start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Six nodes (each primary with a replica); kill a primary: its replica takes over, the
    workers move its channels there, and subscribers get every event once, in order."""
    cluster = start_cluster(tmp_path / "cluster", replicas=1)
    try:
        server = start_server(workers=2, **cluster_env(cluster))
        placed = cluster.channels_on_every_primary(f"cluster-failover:{uuid.uuid4().hex}:")
        victim = sorted(placed)[0]
        (victim_channel,) = placed[victim]
        channels = [name for (name,) in placed.values()]
        token = make_token()
        subscribers = await subscribe_many(server.port, channels * 2, token)
        try:
            async with fresh_connection_client() as http:
                for name in channels:
                    assert (await publish(http, server.url, name, 0, token)).status_code == 202
                await asyncio.gather(*(s.wait_for_events(1, timeout=10) for s in subscribers))
                # Replication is asynchronous: wait until the replica has everything, so
                # that this test sees no loss (see docs/redis.md on what a failover may lose).
                with cluster.node(victim) as node:
                    assert await asyncio.to_thread(node.execute_command, "WAIT", 1, 5000) == 1

                # In a thread: the subscribers must keep answering heartbeats meanwhile.
                await asyncio.to_thread(cluster.process(victim).stop)

                async def moved() -> bool:
                    return await asyncio.to_thread(cluster.owner, victim_channel) != victim

                await wait_until(moved, 30, "the replica never took over")
                since = time.monotonic()
                ready = answers_with(http, f"{server.url}/readyz", 200)
                await wait_until(
                    ready, 15, "/readyz never answered 200 after the replica took over"
                )
                logger.warning(
                    "ready again %.2f s after the replica took over", time.monotonic() - since
                )
                for name in channels:

                    async def accepted(name: str = name) -> bool:
                        # A 503 may follow a stored event (a timeout): retry as a client must.
                        key = f"{name}/1"
                        response = await publish(http, server.url, name, 1, token, key)
                        return response.status_code == 202

                    await wait_until(accepted, 15, f"publishing to {name} never recovered")
            await asyncio.gather(*(s.wait_for_events(2, timeout=15) for s in subscribers))
            for subscriber in subscribers:
                assert subscriber.payloads == [0, 1], (subscriber.channel, subscriber.ids)
        finally:
            await close_all(subscribers)
    finally:
        cluster.stop()


def migrate_slot(cluster: Cluster, slot: int, source: Address, target: Address) -> None:
    """Move one slot, with its keys, from `source` to `target` (as `redis-cli --cluster reshard` does)."""
    cluster.begin_migration(slot, source, target)
    cluster.move_keys(slot, source, target, None)
    cluster.end_migration(slot, target)


async def test_a_migrated_slot_moves_its_channel(
    tmp_path: Path, start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Migrate a channel's slot to another primary: publishes follow MOVED, the workers
    subscribe the channel there, and subscribers get every event once, in order."""
    cluster = start_cluster(tmp_path / "cluster")
    try:
        server = start_server(workers=2, **cluster_env(cluster))
        placed = cluster.channels_on_every_primary(f"cluster-migrate:{uuid.uuid4().hex}:")
        source, target = sorted(placed)[:2]
        (name,) = placed[source]
        token = make_token()
        subscribers = await subscribe_many(server.port, [name] * 4, token)
        try:
            async with fresh_connection_client() as http:
                assert (await publish(http, server.url, name, 0, token)).status_code == 202
                await asyncio.gather(*(s.wait_for_events(1, timeout=10) for s in subscribers))
                slot = key_slot(key_for(name, cluster=True).encode())
                await asyncio.to_thread(migrate_slot, cluster, slot, source, target)
                assert await asyncio.to_thread(cluster.owner, name) == target
                for i in range(1, 4):
                    assert (await publish(http, server.url, name, i, token)).status_code == 202
            await asyncio.gather(*(s.wait_for_events(4, timeout=15) for s in subscribers))
            for subscriber in subscribers:
                assert subscriber.payloads == [0, 1, 2, 3]
        finally:
            await close_all(subscribers)
    finally:
        cluster.stop()
