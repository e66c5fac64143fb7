"""The Redis broadcaster against a real Redis-protocol server: storage, connections, recovery."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster, BroadcasterUnavailable, create_broadcaster
from {{ cookiecutter.project_slug }}.broadcast.redis_streams import key_for
from {{ cookiecutter.project_slug }}.events import encode_json
from {{ cookiecutter.project_slug }}.settings import Settings

from redis_server import RedisServerProcess, start_redis_server
from servers import channel_name, free_port, wait_until
from test_broadcaster import Recorder, publish_n

BroadcasterFactory = Callable[..., Awaitable[Broadcaster]]


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client for looking at what the broadcaster stored."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def make_broadcaster(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[BroadcasterFactory]:
    """Start broadcasters with setting overrides; all stopped after the test."""
    started: list[Broadcaster] = []

    async def make(**overrides: object) -> Broadcaster:
        instance = create_broadcaster(settings_factory(**overrides))
        await instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.stop()


def own_pubsub_clients(admin: redis.Redis) -> list[dict[str, str]]:
    """Pub/sub connections held by this test process (by the broadcaster's client name)."""
    suffix = f":{os.getpid()}"
    return [
        client
        for client in admin.client_list(_type="pubsub")
        if ":pubsub:" in str(client.get("name", "")) and str(client["name"]).endswith(suffix)
    ]


def own_pubsub_connections(admin: redis.Redis) -> int:
    """How many pub/sub connections this test process holds."""
    return len(own_pubsub_clients(admin))


def numsub(admin: redis.Redis, name: str) -> int:
    ((_, count),) = admin.pubsub_numsub(key_for(name))
    return int(count)


async def test_publish_stores_the_event_in_the_channel_stream(
    broadcaster: Broadcaster, admin: redis.Redis
) -> None:
    """A publish is one stream entry whose id is the event id."""
    ch = channel_name()
    event = await broadcaster.publish(ch, "chat.new", encode_json({"text": "hi"}))
    entries = admin.xrange(key_for(ch))
    assert [(entry_id.decode(), fields) for entry_id, fields in entries] == [
        (event.id, {b"n": b"chat.new", b"d": b'{"text":"hi"}'})
    ]


async def test_history_ttl_sets_an_expiry_on_the_stream(
    make_broadcaster: BroadcasterFactory, admin: redis.Redis
) -> None:
    """Every publish (re)sets the stream key's expiry to HISTORY_TTL."""
    instance = await make_broadcaster(history_ttl=300)
    ch = channel_name()
    await instance.publish(ch, "message", b"1")
    assert 295 <= admin.ttl(key_for(ch)) <= 300
    admin.expire(key_for(ch), 10)
    await instance.publish(ch, "message", b"2")
    assert admin.ttl(key_for(ch)) > 10


async def test_history_size_trims_the_stream(
    make_broadcaster: BroadcasterFactory, admin: redis.Redis
) -> None:
    """The stream keeps at least HISTORY_SIZE entries, and not every entry ever published."""
    instance = await make_broadcaster(history_size=5)
    ch = channel_name()
    await publish_n(instance, ch, 350)
    length = admin.xlen(key_for(ch))
    assert 5 <= length < 350


async def test_history_expired_by_ttl_is_a_resync(
    make_broadcaster: BroadcasterFactory, admin: redis.Redis
) -> None:
    """Once the stream expired, resuming from its ids is not recovered."""
    instance = await make_broadcaster(history_ttl=1)
    ch = channel_name()
    (event,) = await publish_n(instance, ch, 1)
    await wait_until(lambda: not admin.exists(key_for(ch)), 5, "the stream never expired")
    rec = Recorder()
    assert await instance.subscribe(ch, rec, event.id) is False
    assert rec.events == []


async def test_events_reach_subscribers_of_another_broadcaster(
    make_broadcaster: BroadcasterFactory,
) -> None:
    """Two broadcasters (two workers) share events through Redis, in order."""
    a, b = await make_broadcaster(), await make_broadcaster()
    ch = channel_name()
    on_a, on_b = Recorder(), Recorder()
    await a.subscribe(ch, on_a)
    await b.subscribe(ch, on_b)
    for i in range(40):
        await (a if i % 2 else b).publish(ch, "message", encode_json(i))
    await on_a.wait_for(40)
    await on_b.wait_for(40)
    assert on_a.payloads == on_b.payloads == list(range(40))


async def test_one_pubsub_connection_whatever_the_subscribers(
    broadcaster: Broadcaster, admin: redis.Redis
) -> None:
    """Channels are subscribed on the broadcaster's single pub/sub connection."""
    assert own_pubsub_connections(admin) == 1
    channels = [channel_name() for _ in range(20)]
    recorders = [Recorder() for _ in range(100)]
    for i, rec in enumerate(recorders):
        await broadcaster.subscribe(channels[i % 20], rec)
    assert own_pubsub_connections(admin) == 1
    assert all(numsub(admin, ch) == 1 for ch in channels)


async def test_last_local_subscriber_leaving_unsubscribes(
    broadcaster: Broadcaster, admin: redis.Redis
) -> None:
    """A channel with no local subscribers is unsubscribed from Redis."""
    ch = channel_name()
    a, b = Recorder(), Recorder()
    await broadcaster.subscribe(ch, a)
    await broadcaster.subscribe(ch, b)
    assert numsub(admin, ch) == 1
    broadcaster.unsubscribe(ch, a)
    broadcaster.unsubscribe(ch, b)
    await wait_until(lambda: numsub(admin, ch) == 0, 5, "the channel stayed subscribed")


async def test_resubscribing_at_once_keeps_the_channel_live(broadcaster: Broadcaster) -> None:
    """Leaving and coming back before Redis confirmed either still ends up subscribed."""
    ch = channel_name()
    first, second = Recorder(), Recorder()
    await broadcaster.subscribe(ch, first)
    broadcaster.unsubscribe(ch, first)
    await broadcaster.subscribe(ch, second)
    await broadcaster.publish(ch, "message", b"1")
    await second.wait_for(1)
    assert second.payloads == [1]


async def test_killed_pubsub_connection_is_backfilled_in_order(
    make_broadcaster: BroadcasterFactory, admin: redis.Redis
) -> None:
    """Events published while the pub/sub connection is down arrive once each, in order."""
    listener, publisher = await make_broadcaster(), await make_broadcaster()
    ch = channel_name()
    rec = Recorder()
    await listener.subscribe(ch, rec)
    total = 300

    async def keep_publishing() -> None:
        for i in range(total):
            await publisher.publish(ch, "message", encode_json(i))
            if i % 10 == 0:
                await asyncio.sleep(0.001)

    publishing = asyncio.create_task(keep_publishing())
    kills = 0
    while not publishing.done() and kills < 5:
        await asyncio.sleep(0.05)
        for client in own_pubsub_clients(admin):
            admin.client_kill_filter(_id=client["id"])
        kills += 1
    await publishing
    assert kills >= 2, "publishing finished before the connection could be killed twice"
    await rec.wait_for(total, timeout=15)
    await asyncio.sleep(0)  # nothing more may follow
    assert rec.payloads == list(range(total))


async def test_outage_fails_publishes_and_recovers_live_delivery(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """Redis down: not ready, publishes raise; back on the same port: ready, delivery resumes."""
    server: RedisServerProcess = start_redis_server(tmp_path / "redis")
    instance = create_broadcaster(settings_factory(redis_url=server.url))
    await instance.start()
    try:
        ch = channel_name()
        rec = Recorder()
        await instance.subscribe(ch, rec)
        await instance.publish(ch, "message", b"1")
        await rec.wait_for(1)

        server.stop()
        await wait_until(lambda: not instance.is_up(), 5, "still up with redis down")
        assert not await instance.is_ready()
        with pytest.raises(BroadcasterUnavailable):
            await instance.publish(ch, "message", b"2")
        with pytest.raises(BroadcasterUnavailable):
            await instance.subscribe(channel_name(), Recorder())

        server.start()
        await wait_until(instance.is_up, 10, "not up again within 10 s of redis returning")
        assert await instance.is_ready()
        await instance.publish(ch, "message", b"3")
        await rec.wait_for(2)
        assert rec.payloads == [1, 3]
    finally:
        await instance.stop()
        server.stop()


async def test_a_hung_redis_is_noticed_and_recovered_from(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """Redis accepting connections but answering nothing: not ready, then back without a gap."""
    server = start_redis_server(tmp_path / "redis")
    instance = create_broadcaster(settings_factory(redis_url=server.url))
    await instance.start()
    admin = redis.Redis.from_url(server.url)
    try:
        ch = channel_name()
        rec = Recorder()
        await instance.subscribe(ch, rec)
        await instance.publish(ch, "message", b"1")
        await rec.wait_for(1)

        # Every client, the pub/sub connection included, is frozen for 12 s: long
        # enough for the worst case of noticing it (a canary timing out, then a
        # reconnect whose subscriptions go unconfirmed: about 8 s) even on a busy machine.
        admin.client_pause(12000, all=True)
        assert not await instance.is_ready()
        # The canary goes unanswered, and reconnecting doesn't get through either.
        await wait_until(lambda: not instance.is_up(), 10, "a frozen redis still counts as up")

        await wait_until(instance.is_up, 15, "not up again after redis woke up")
        assert await instance.is_ready()
        await instance.publish(ch, "message", b"2")
        await rec.wait_for(2)
        assert rec.payloads == [1, 2]
    finally:
        admin.close()
        await instance.stop()
        server.stop()


async def test_starting_while_redis_is_down_waits_for_it(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """A service started before its Redis comes up starts not ready, then becomes ready."""
    port = free_port()  # nothing listens there yet
    instance = create_broadcaster(settings_factory(redis_url=f"redis://127.0.0.1:{port}/0"))
    await instance.start()
    server: RedisServerProcess | None = None
    try:
        assert not instance.is_up()
        assert not await instance.is_ready()
        with pytest.raises(BroadcasterUnavailable):
            await instance.publish(channel_name(), "message", b"1")

        server = start_redis_server(tmp_path / "redis", port=port)
        await wait_until(instance.is_up, 10, "not up within 10 s of redis starting")
        ch = channel_name()
        rec = Recorder()
        await instance.subscribe(ch, rec)
        await instance.publish(ch, "message", b"2")
        await rec.wait_for(1)
        assert rec.payloads == [2]
    finally:
        await instance.stop()
        if server is not None:
            server.stop()
