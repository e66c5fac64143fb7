"""The broadcaster contract, run against the configured implementation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster, create_broadcaster
from {{ cookiecutter.project_slug }}.events import Event, encode_json
from {{ cookiecutter.project_slug }}.settings import Settings

from servers import channel_name


class Recorder:
    """A subscriber that remembers what it was handed."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lost_channels: list[str] = []
        self.arrived = asyncio.Event()

    def deliver(self, event: Event) -> None:
        self.events.append(event)
        self.arrived.set()

    def replay(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        self.arrived.set()

    def lost(self, channel: str) -> None:
        self.lost_channels.append(channel)
        self.arrived.set()

    @property
    def payloads(self) -> list[object]:
        return [json.loads(e.data) for e in self.events]

    async def wait_for(self, count: int, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def publish_n(broadcaster: Broadcaster, name: str, n: int, start: int = 0) -> list[Event]:
    return [
        await broadcaster.publish(name, "message", encode_json(i)) for i in range(start, start + n)
    ]


async def test_publish_reaches_every_subscriber_in_order(broadcaster: Broadcaster) -> None:
    """Each subscriber gets each event once, in publish order."""
    ch = channel_name()
    a, b = Recorder(), Recorder()
    assert await broadcaster.subscribe(ch, a) is True
    assert await broadcaster.subscribe(ch, b) is True
    published = await publish_n(broadcaster, ch, 50)
    await a.wait_for(50)
    await b.wait_for(50)
    assert a.payloads == b.payloads == list(range(50))
    assert [e.id for e in a.events] == [e.id for e in published]
    assert len({e.id for e in published}) == 50


async def test_events_carry_name_and_compact_data(broadcaster: Broadcaster) -> None:
    """The event keeps its name and its data as compact JSON."""
    ch = channel_name()
    rec = Recorder()
    await broadcaster.subscribe(ch, rec)
    await broadcaster.publish(ch, "chat.new", encode_json({"text": "héllo", "n": [1, 2]}))
    await rec.wait_for(1)
    (event,) = rec.events
    assert event.channel == ch and event.name == "chat.new"
    assert event.data == '{"text":"héllo","n":[1,2]}'.encode()


async def test_other_channels_are_not_delivered(broadcaster: Broadcaster) -> None:
    """A subscriber only hears its own channel."""
    mine, other = channel_name(), channel_name()
    rec = Recorder()
    await broadcaster.subscribe(mine, rec)
    await broadcaster.publish(other, "message", b"1")
    await broadcaster.publish(mine, "message", b"2")
    await rec.wait_for(1)
    assert rec.payloads == [2]


async def test_unsubscribe_stops_delivery(broadcaster: Broadcaster) -> None:
    """After unsubscribe nothing more arrives."""
    ch = channel_name()
    rec, witness = Recorder(), Recorder()
    await broadcaster.subscribe(ch, rec)
    await broadcaster.subscribe(ch, witness)
    await broadcaster.publish(ch, "message", b"1")
    await rec.wait_for(1)
    broadcaster.unsubscribe(ch, rec)
    await broadcaster.publish(ch, "message", b"2")
    await witness.wait_for(2)
    assert rec.payloads == [1]
    assert broadcaster.subscriber_count(ch) == 1


async def test_resume_replays_exactly_the_missed_events(broadcaster: Broadcaster) -> None:
    """Subscribing after an id replays every later event, then goes live with no gap."""
    ch = channel_name()
    events = await publish_n(broadcaster, ch, 10)
    rec = Recorder()
    seen: list[bool] = []
    recovered = await broadcaster.subscribe(ch, rec, events[3].id, on_live=seen.append)
    assert recovered is True and seen == [True]
    await publish_n(broadcaster, ch, 2, start=10)
    await rec.wait_for(8)
    assert rec.payloads == list(range(4, 12))


async def test_resuming_while_publishing_repeats_and_misses_nothing(
    broadcaster: Broadcaster,
) -> None:
    """Events published while resumes are replayed reach each resumed subscriber once, in order."""
    ch = channel_name()
    events = await publish_n(broadcaster, ch, 5)
    witness = Recorder()
    await broadcaster.subscribe(ch, witness)
    resumed = [Recorder() for _ in range(5)]
    await asyncio.gather(
        publish_n(broadcaster, ch, 20, start=5),
        *(broadcaster.subscribe(ch, rec, events[1].id) for rec in resumed),
    )
    await witness.wait_for(20)
    for rec in resumed:
        await rec.wait_for(23)
        assert rec.payloads == list(range(2, 25))


async def test_resume_from_the_latest_id_replays_nothing(broadcaster: Broadcaster) -> None:
    """Resuming from the newest id is recovered with an empty replay."""
    ch = channel_name()
    events = await publish_n(broadcaster, ch, 3)
    rec = Recorder()
    assert await broadcaster.subscribe(ch, rec, events[-1].id) is True
    await broadcaster.publish(ch, "message", b"99")
    await rec.wait_for(1)
    assert rec.payloads == [99]


@pytest.mark.parametrize("bad_id", ["garbage", "", "0-0-0", "99999999999999-0", "-1"])
async def test_unknown_ids_are_not_recovered(broadcaster: Broadcaster, bad_id: str) -> None:
    """An unknown id replays nothing and reports `recovered` False; live events still flow."""
    ch = channel_name()
    await publish_n(broadcaster, ch, 3)
    rec = Recorder()
    seen: list[bool] = []
    assert await broadcaster.subscribe(ch, rec, bad_id, on_live=seen.append) is False
    assert seen == [False] and rec.events == []
    await broadcaster.publish(ch, "message", b"7")
    await rec.wait_for(1)
    assert rec.payloads == [7]


@pytest.fixture
async def small_history(settings_factory: Callable[..., Settings]) -> AsyncIterator[Broadcaster]:
    """A broadcaster keeping only 5 events per channel."""
    instance = create_broadcaster(settings_factory(history_size=5))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


async def test_ids_older_than_the_history_are_not_recovered(small_history: Broadcaster) -> None:
    """An id trimmed out of history can't be resumed from without a gap."""
    ch = channel_name()
    events = await publish_n(small_history, ch, 1)
    await publish_n(small_history, ch, 200, start=1)
    rec = Recorder()
    assert await small_history.subscribe(ch, rec, events[0].id) is False
    assert rec.events == []


async def test_at_least_history_size_events_are_kept(small_history: Broadcaster) -> None:
    """The last HISTORY_SIZE events can always be replayed."""
    ch = channel_name()
    events = await publish_n(small_history, ch, 30)
    rec = Recorder()
    assert await small_history.subscribe(ch, rec, events[-6].id) is True
    await rec.wait_for(5)
    assert rec.payloads == list(range(25, 30))


async def test_history_is_replayed_per_channel(broadcaster: Broadcaster) -> None:
    """Replay only contains the resumed channel's events."""
    a, b = channel_name(), channel_name()
    first = await broadcaster.publish(a, "message", b"0")
    await broadcaster.publish(b, "message", b"1")
    await broadcaster.publish(a, "message", b"2")
    rec = Recorder()
    assert await broadcaster.subscribe(a, rec, first.id) is True
    await rec.wait_for(1)
    assert rec.payloads == [2]


async def test_broadcaster_reports_ready(broadcaster: Broadcaster) -> None:
    """A started broadcaster is up and ready."""
    assert broadcaster.is_up()
    assert await broadcaster.is_ready()
