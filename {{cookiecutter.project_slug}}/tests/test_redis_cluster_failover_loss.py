"""What a failover loses: publish continuously to a primary, kill it, let its replica take over.

Redis replicates asynchronously, so an event the old primary acknowledged (202)
but had not yet sent to its replica is gone with it. This test measures that:
it publishes at a steady rate to channels on one primary, kills that primary
while publishing, and once its replica has taken over counts, per run, the
events answered 202 that no subscriber received and resume can't replay
(lost), and those that live subscribers received but resume can't replay
(only in clients). It asserts correctness only (every subscriber's events in
order, without duplicates, between resync signals; everything acknowledged
after the failover delivered), never the loss count, which depends on timing.

By default one run; for the numbers in docs/redis.md:

    FAILOVER_RUNS=5 FAILOVER_RATE=500 pytest tests/test_redis_cluster_failover_loss.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster, BroadcasterUnavailable, create_broadcaster
from {{ cookiecutter.project_slug }}.broadcast.redis_streams import key_for, parse_id
from {{ cookiecutter.project_slug }}.events import Event, encode_json
from {{ cookiecutter.project_slug }}.settings import Settings

from redis_cluster_nodes import Cluster, start_cluster
from servers import wait_for

RUNS = int(os.environ.get("FAILOVER_RUNS", "1"))
RATE = float(os.environ.get("FAILOVER_RATE", "200"))  # events a second, over all channels
CHANNELS = 4  # on the primary that is killed
BEFORE = 1.0  # seconds of publishing before the kill
AFTER = 1.0  # seconds of publishing once the replica has taken over


class Timeline:
    """A subscriber that keeps what it was handed, resync signals included, in order."""

    def __init__(self) -> None:
        self.items: list[str | None] = []  # event ids; None for a resync signal
        self.arrived = asyncio.Event()

    def deliver(self, event: Event) -> None:
        self.items.append(event.id)
        self.arrived.set()

    def replay(self, events: Sequence[Event]) -> None:
        self.items.extend(e.id for e in events)
        self.arrived.set()

    def lost(self, channel: str) -> None:
        self.items.append(None)
        self.arrived.set()

    @property
    def received(self) -> set[str]:
        return {i for i in self.items if i is not None}

    def assert_ordered(self) -> None:
        """In order and once each, within every stretch between resync signals."""
        last = None
        for item in self.items:
            if item is None:
                last = None
                continue
            current = parse_id(item)
            assert current is not None and (last is None or current > last), self.items
            last = current

    async def wait_for(self, event_id: str, timeout: float) -> None:
        target = parse_id(event_id)
        assert target is not None
        async with asyncio.timeout(timeout):
            while not any(i is not None and (parse_id(i) or (0, 0)) >= target for i in self.items):
                self.arrived.clear()
                await self.arrived.wait()


@dataclass
class Run:
    """What one failover did to the events published around it."""

    rate: float = 0.0  # events acknowledged a second before the kill
    acknowledged: int = 0
    refused: int = 0
    lost: int = 0
    only_in_clients: int = 0
    resyncs: int = 0
    unavailable: float = 0.0  # seconds from the kill to the first 202 on the new primary


async def publish_until(
    broadcaster: Broadcaster, channels: list[str], stop: asyncio.Event, run: Run
) -> dict[str, list[str]]:
    """Publish round-robin over `channels` at RATE until `stop`; the ids answered 202, per channel.

    One publish at a time, each waiting for its answer, so every channel's events
    are acknowledged in the order they were sent.
    """
    loop = asyncio.get_running_loop()
    acknowledged: dict[str, list[str]] = {name: [] for name in channels}
    n = 0
    next_at = loop.time()
    while not stop.is_set():
        name = channels[n % len(channels)]
        try:
            event = await broadcaster.publish(name, "message", encode_json(n))
            acknowledged[name].append(event.id)
            run.acknowledged += 1
        except BroadcasterUnavailable:
            run.refused += 1
        n += 1
        next_at += 1 / RATE
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return acknowledged


def in_history(cluster: Cluster, channel: str) -> set[str]:
    """The ids the channel's stream holds now (read through the new layout)."""
    client = cluster.client()
    try:
        entries = client.xrange(key_for(channel, cluster=True))
        return {str(entry_id) for entry_id, _ in entries or ()}
    finally:
        client.close()


async def one_failover(tmp_path: Path, settings_factory: Callable[..., Settings]) -> Run:
    """Start six nodes, publish, kill a primary, count what its replica doesn't have."""
    cluster = start_cluster(tmp_path, replicas=1)
    settings = settings_factory(redis_url=cluster.url, redis_cluster=True, history_ttl=600)
    publisher = create_broadcaster(settings)  # two workers: one publishes,
    listener = create_broadcaster(settings)  # the other's subscribers count
    run = Run()
    try:
        await publisher.start()
        await listener.start()
        victim = cluster.primaries()[0]

        def replica_online() -> bool:
            with cluster.node(victim) as node:
                replica = node.info("replication").get("slave0")
            return isinstance(replica, dict) and replica.get("state") == "online"

        # A replica still in its first full sync can't take over: it has no data yet.
        await asyncio.to_thread(wait_for, replica_online, 30, "the replica never synced")
        channels = cluster.channels_on_every_primary(
            f"failover-loss:{uuid.uuid4().hex}:", per_node=CHANNELS
        )[victim]
        timelines = {name: Timeline() for name in channels}
        for name, timeline in timelines.items():
            assert await listener.subscribe(name, timeline) is True

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        publishing = asyncio.create_task(publish_until(publisher, channels, stop, run))
        await asyncio.sleep(BEFORE)  # publishing meanwhile, at RATE
        run.rate = run.acknowledged / BEFORE
        await asyncio.to_thread(cluster.process(victim).stop)
        killed_at = loop.time()
        refused_before = run.refused

        async with asyncio.timeout(30):
            while await asyncio.to_thread(cluster.owner, channels[0]) == victim:
                await asyncio.sleep(0.1)
            acknowledged_before = run.acknowledged
            while run.acknowledged == acknowledged_before:
                await asyncio.sleep(0.01)
        run.unavailable = loop.time() - killed_at
        run.refused -= refused_before
        await asyncio.sleep(AFTER)
        stop.set()
        acknowledged = await publishing

        for name, timeline in timelines.items():
            # Everything acknowledged since the failover reaches the subscribers.
            await timeline.wait_for(acknowledged[name][-1], timeout=15)
            timeline.assert_ordered()
            history = await asyncio.to_thread(in_history, cluster, name)
            for event_id in acknowledged[name]:
                if event_id not in history:
                    if event_id in timeline.received:
                        run.only_in_clients += 1
                    else:
                        run.lost += 1
            run.resyncs += timeline.items.count(None)
        return run
    finally:
        for broadcaster in (publisher, listener):
            with contextlib.suppress(RedisError, OSError):
                await broadcaster.stop()
        cluster.stop()


@pytest.mark.timeout(60 * RUNS)
async def test_loss_on_failover(tmp_path: Path, settings_factory: Callable[..., Settings]) -> None:
    """Kill a primary under a steady publish rate, RUNS times; print what each run lost."""
    runs = [await one_failover(tmp_path / f"run-{n}", settings_factory) for n in range(RUNS)]
    print(f"\nfailover loss at {RATE:g} events/s over {CHANNELS} channels on the killed primary:")
    print("run  rate/s  202s  503s  unavailable_s  lost  only_in_clients  resyncs")
    for n, run in enumerate(runs):
        print(
            f"{n + 1:3}  {run.rate:6.0f}  {run.acknowledged:4}  {run.refused:4}  {run.unavailable:13.2f}"
            f"  {run.lost:4}  {run.only_in_clients:15}  {run.resyncs:7}"
        )
