"""Channels whose slot moves between primaries while they are in use.

A slot migrates in three steps (as `redis-cli --cluster reshard` does it): it is
marked MIGRATING on its owner and IMPORTING on the new node, its keys move in
batches, and then every node is told the new owner. In between, a key still on
the old node is served there and one already moved is answered with `ASK`,
which the cluster client follows to the new node.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.crc import key_slot

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster, BroadcasterUnavailable, create_broadcaster
from {{ cookiecutter.project_slug }}.broadcast.redis_streams import key_for
from {{ cookiecutter.project_slug }}.events import Event, encode_json
from {{ cookiecutter.project_slug }}.settings import Settings
from test_redis_cluster import migrate_slot

from redis_cluster_nodes import Cluster, start_cluster
from servers import wait_until
from test_broadcaster import Recorder, publish_n

Address = tuple[str, int]


def slot_of(channel: str) -> int:
    """The slot a channel (its stream, and its sharded pub/sub channel) lives in."""
    return key_slot(key_for(channel, cluster=True).encode())


def channels_in_slot(slot: int, prefix: str, count: int) -> list[str]:
    """`count` channel names (`prefix` + a number) that hash to `slot`."""
    # Stops at `count`: the test's broadcaster shares this event loop, and a long
    # search would keep its listeners from hearing their canaries.
    names = (f"{prefix}{n}" for n in range(2_000_000))
    found = list(itertools.islice((name for name in names if slot_of(name) == slot), count))
    assert len(found) == count, f"fewer than {count} channel names in slot {slot}"
    return found


@pytest.fixture
async def moving(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[tuple[Cluster, Broadcaster]]:
    """A cluster of its own (its slots get moved) and a broadcaster on it."""
    cluster = start_cluster(tmp_path / "cluster")
    broadcaster = create_broadcaster(
        settings_factory(redis_url=cluster.url, redis_cluster=True, history_ttl=600)
    )
    try:
        await broadcaster.start()
        yield cluster, broadcaster
    finally:
        await broadcaster.stop()
        cluster.stop()


async def wait_for_all(recorders: list[Recorder], count: int) -> None:
    """Wait until every recorder has `count` events."""
    await asyncio.gather(*(r.wait_for(count, timeout=15) for r in recorders))


async def test_publish_resume_and_subscribe_work_mid_migration(
    moving: tuple[Cluster, Broadcaster],
) -> None:
    """A slot half moved (one channel's stream on the new node, another's still on the old):
    publishing, resuming and subscribing work on both channels, and every subscriber gets
    every event exactly once, in order, once the move completes."""
    cluster, broadcaster = moving
    primaries = cluster.primaries()
    source, target = primaries[0], primaries[1]
    placed = cluster.channels_on_every_primary(f"cluster-ask:{uuid.uuid4().hex}:")
    (moved,) = placed[source]
    slot = slot_of(moved)
    (stays,) = channels_in_slot(slot, f"cluster-ask-stays:{uuid.uuid4().hex}:", 1)
    channels = [moved, stays]

    early = {name: Recorder() for name in channels}
    for name in channels:
        assert await broadcaster.subscribe(name, early[name]) is True
    first = {name: await publish_n(broadcaster, name, 3) for name in channels}
    await wait_for_all(list(early.values()), 3)

    await asyncio.to_thread(cluster.begin_migration, slot, source, target)
    await asyncio.to_thread(cluster.move_keys, slot, source, target, [key_for(moved, cluster=True)])
    # The slot is now split: its keys partly on each node.
    assert cluster.keys_in_slot(source, slot) == [key_for(stays, cluster=True)]
    assert cluster.keys_in_slot(target, slot) == [key_for(moved, cluster=True)]

    # New subscribers mid-migration: fresh ones, and ones resuming from the first event.
    fresh = {name: Recorder() for name in channels}
    resumed = {name: Recorder() for name in channels}
    for name in channels:
        assert await broadcaster.subscribe(name, fresh[name]) is True
    middle = {name: await publish_n(broadcaster, name, 3, start=3) for name in channels}
    for name in channels:
        last_id = first[name][0].id
        # Resume reads the stream wherever it is (following ASK to the new node).
        assert await broadcaster.subscribe(name, resumed[name], last_event_id=last_id) is True

    await asyncio.to_thread(cluster.move_keys, slot, source, target, None)
    await asyncio.to_thread(cluster.end_migration, slot, target)
    assert await asyncio.to_thread(cluster.owner, moved) == target
    last = {name: await publish_n(broadcaster, name, 1, start=6) for name in channels}

    for name in channels:
        expected: dict[str, list[Event]] = {
            "early": first[name] + middle[name] + last[name],
            "fresh": middle[name] + last[name],
            "resumed": first[name][1:] + middle[name] + last[name],
        }
        got = {"early": early[name], "fresh": fresh[name], "resumed": resumed[name]}
        for who, recorder in got.items():
            await recorder.wait_for(len(expected[who]), timeout=15)
            assert [e.id for e in recorder.events] == [e.id for e in expected[who]], (name, who)
            assert recorder.lost_channels == [], (name, who)


async def test_an_idempotent_publish_waits_out_a_split_slot(
    moving: tuple[Cluster, Broadcaster],
) -> None:
    """With an idempotency key a publish touches two keys of one slot; while that slot's keys
    are split between two nodes Redis refuses it (TRYAGAIN): 503, nothing stored. Once the
    move completes, the same key publishes exactly once."""
    cluster, broadcaster = moving
    source, target = cluster.primaries()[:2]
    placed = cluster.channels_on_every_primary(f"cluster-tryagain:{uuid.uuid4().hex}:")
    (name,) = placed[source]
    slot = slot_of(name)
    await publish_n(broadcaster, name, 1)
    await asyncio.to_thread(cluster.begin_migration, slot, source, target)

    with pytest.raises(BroadcasterUnavailable):
        await broadcaster.publish(name, "message", encode_json(1), idempotency_key="k")
    # Without a key the publish is one key, and follows the stream wherever it is.
    plain = await broadcaster.publish(name, "message", encode_json(2))

    await asyncio.to_thread(cluster.move_keys, slot, source, target, None)
    await asyncio.to_thread(cluster.end_migration, slot, target)
    first = await broadcaster.publish(name, "message", encode_json(1), idempotency_key="k")
    again = await broadcaster.publish(name, "message", encode_json(1), idempotency_key="k")
    assert not first.duplicate and again.duplicate and again.id == first.id
    with cluster.node(target) as node:
        ids = [entry_id for entry_id, _ in node.xrange(key_for(name, cluster=True))]
    assert ids[1:] == [plain.id, first.id]


async def test_a_channel_its_new_owner_refuses_is_placed_again(
    moving: tuple[Cluster, Broadcaster], caplog: pytest.LogCaptureFixture
) -> None:
    """Nodes learn of a slot's new owner one by one. Told last, the new owner still refuses the
    channel (MOVED back) after the old one gave it away: the worker places it again until the
    new owner accepts it, and its subscriber then gets every event, in order."""
    caplog.set_level(logging.INFO, logger="{{ cookiecutter.project_slug }}.broadcast")
    cluster, broadcaster = moving
    source, target = cluster.primaries()[:2]
    (name,) = cluster.channels_on_every_primary(f"cluster-told-last:{uuid.uuid4().hex}:")[source]
    slot = slot_of(name)
    recorder = Recorder()
    assert await broadcaster.subscribe(name, recorder) is True
    await publish_n(broadcaster, name, 2)
    await recorder.wait_for(2, timeout=15)

    await asyncio.to_thread(cluster.begin_migration, slot, source, target)
    await asyncio.to_thread(cluster.move_keys, slot, source, target, None)
    everyone_but_target = [address for address in cluster.addresses if address != target]
    await asyncio.to_thread(cluster.end_migration, slot, target, everyone_but_target)
    await wait_until(
        lambda: f"redis refused {key_for(name, cluster=True)}" in caplog.text,
        timeout=15,
        message="the new owner never refused the channel",
    )
    await asyncio.to_thread(cluster.end_migration, slot, target, [target])

    await publish_n(broadcaster, name, 2, start=2)
    await recorder.wait_for(4, timeout=15)
    assert recorder.payloads == [0, 1, 2, 3]
    assert recorder.lost_channels == []


async def test_subscribing_while_the_slot_moves_is_not_refused(
    moving: tuple[Cluster, Broadcaster],
) -> None:
    """Subscribe to channels whose slot is moving, and to one whose slot moved before this worker
    re-read the layout: every subscribe succeeds, the node's other channels are not disturbed,
    and every event arrives exactly once."""
    cluster, broadcaster = moving
    source, target = cluster.primaries()[:2]
    placed = cluster.channels_on_every_primary(f"cluster-move:{uuid.uuid4().hex}:", per_node=2)
    neighbour, name = placed[source]
    slot = slot_of(name)
    others = channels_in_slot(slot, f"cluster-move-racing:{uuid.uuid4().hex}:", 4)
    # A channel of the same node that stays there, subscribed all along.
    watching = Recorder()
    assert await broadcaster.subscribe(neighbour, watching) is True
    await publish_n(broadcaster, name, 1)

    # Moved behind the worker's back: its layout still names the old node.
    await asyncio.to_thread(migrate_slot, cluster, slot, source, target)
    late = Recorder()
    assert await broadcaster.subscribe(name, late) is True

    # Subscribes racing a move back.
    async def subscribe(channel: str) -> Recorder:
        recorder = Recorder()
        assert await broadcaster.subscribe(channel, recorder) is True
        return recorder

    moving_back = asyncio.create_task(
        asyncio.to_thread(migrate_slot, cluster, slot, target, source)
    )
    racing = list(await asyncio.gather(*(subscribe(c) for c in others)))
    await moving_back

    recorders = [late, *racing, watching]
    for channel in [name, *others, neighbour]:
        await publish_n(broadcaster, channel, 2)
    await wait_for_all(recorders, 2)
    for recorder in recorders:
        assert recorder.payloads == [0, 1]
        assert recorder.lost_channels == []
