"""The per-connection outbox: bounded live events, urgent control items, batches or one at a time."""

from __future__ import annotations

import asyncio

from {{ cookiecutter.project_slug }}.events import Event
from {{ cookiecutter.project_slug }}.outbox import Outbox


def _event(n: int) -> Event:
    return Event("room", str(n), "message", b"0")


class Calls:
    """What an outbox told its connection."""

    def __init__(self) -> None:
        self.overflows = 0
        self.lost: list[str] = []

    def overflowed(self) -> None:
        self.overflows += 1

    def lost_channel(self, channel: str) -> None:
        self.lost.append(channel)


def _outbox(maxsize: int, calls: Calls) -> Outbox[str]:
    return Outbox(maxsize, calls.overflowed, calls.lost_channel)


def _pop(outbox: Outbox[str]) -> Event | str:
    """What a writer that sends one item at a time does for each."""
    item = outbox.queued.popleft()
    if outbox.uncounted:
        outbox.forget(item)
    return item


def test_the_live_event_past_maxsize_closes_the_outbox_and_reports_once() -> None:
    """Overflow closes the outbox, says so once, and later events are ignored."""
    calls = Calls()
    outbox = _outbox(2, calls)
    for n in range(4):
        outbox.deliver(_event(n))
    assert calls.overflows == 1
    assert outbox.closed and outbox.overflowed
    assert [item.id for item in outbox.take() if isinstance(item, Event)] == ["0", "1"]


def test_replayed_history_and_control_items_do_not_count_against_maxsize() -> None:
    """Only live events are bounded: a long replay and replies never overflow."""
    calls = Calls()
    outbox = _outbox(1, calls)
    outbox.replay([_event(n) for n in range(10)])
    outbox.push("reply")
    outbox.deliver(_event(10))
    assert calls.overflows == 0
    assert len(outbox) == 12


def test_take_returns_every_item_in_order_and_counts_its_events() -> None:
    """A batch is everything queued, oldest first; `taken_events` excludes control items."""
    outbox = _outbox(10, Calls())
    outbox.replay([_event(0)])
    outbox.push("reply")
    outbox.deliver(_event(1))
    batch = outbox.take()
    assert [getattr(item, "id", item) for item in batch] == ["0", "reply", "1"]
    assert outbox.taken_events == 2
    assert outbox.take() == [] and outbox.taken_events == 0


def test_items_popped_one_at_a_time_come_in_order() -> None:
    """Popping `queued` (and forgetting what isn't live) empties it as `take` would."""
    outbox = _outbox(10, Calls())
    outbox.replay([_event(0)])
    outbox.push("reply")
    outbox.deliver(_event(1))
    popped = []
    while outbox.queued:
        popped.append(_pop(outbox))
    assert [getattr(item, "id", item) for item in popped] == ["0", "reply", "1"]
    assert len(outbox) == 0 and outbox.uncounted == 0


def test_popping_makes_room_for_more_live_events_and_not_for_replayed_ones() -> None:
    """Popped live events free their place; popped replayed history never counted."""
    calls = Calls()
    outbox = _outbox(2, calls)
    outbox.replay([_event(n) for n in range(5)])
    outbox.deliver(_event(5))
    outbox.deliver(_event(6))
    for _ in range(5):
        _pop(outbox)  # the replay: the two live events still wait
    outbox.deliver(_event(7))
    assert calls.overflows == 1  # a third live event waiting is one too many

    calls = Calls()
    outbox = _outbox(2, calls)
    for n in range(10):
        outbox.deliver(_event(n))
        _pop(outbox)
    assert calls.overflows == 0


def test_live_events_queued_before_a_replay_never_pass_the_bound() -> None:
    """Live, then replayed, then popped: until the replay is out the live count may run
    high by the live events that were waiting before it, never low."""
    calls = Calls()
    outbox = _outbox(2, calls)
    outbox.deliver(_event(0))
    outbox.replay([_event(n) for n in range(1, 4)])
    _pop(outbox)  # the live event, counted as a replayed one
    outbox.deliver(_event(4))
    assert calls.overflows == 0
    outbox.deliver(_event(5))  # two live events wait, but three are counted
    assert calls.overflows == 1


def test_retain_keeps_only_what_is_still_due() -> None:
    """A closing connection's outbox drops what `keep` refuses and counts the rest."""
    outbox = _outbox(10, Calls())
    outbox.deliver(_event(0))
    outbox.push("reply")
    outbox.replay([_event(1)])
    outbox.push("ping")
    outbox.retain(lambda item: item == "reply" or getattr(item, "id", None) == "1")
    assert [getattr(item, "id", item) for item in outbox.take()] == ["reply", "1"]
    assert outbox.taken_events == 1


def test_an_urgent_item_jumps_queued_events() -> None:
    """`urgent=True` puts a control item ahead of everything queued."""
    outbox = _outbox(10, Calls())
    outbox.deliver(_event(0))
    outbox.push("ping", urgent=True)
    assert outbox.take()[0] == "ping"


def test_taking_makes_room_for_more_live_events() -> None:
    """The bound is on what waits: a writer that keeps up never overflows."""
    calls = Calls()
    outbox = _outbox(2, calls)
    for n in range(10):
        outbox.deliver(_event(n))
        outbox.take()
    assert calls.overflows == 0


def test_a_closed_outbox_accepts_nothing() -> None:
    """After `close`, events, history, control items and losses are all dropped."""
    calls = Calls()
    outbox = _outbox(10, calls)
    outbox.close()
    outbox.deliver(_event(0))
    outbox.replay([_event(1)])
    outbox.push("reply")
    outbox.lost("room")
    assert len(outbox) == 0 and calls.lost == []


def test_lost_continuity_is_passed_to_the_connection() -> None:
    """`lost(channel)` calls the connection's handler with that channel."""
    calls = Calls()
    outbox = _outbox(10, calls)
    outbox.lost("room")
    assert calls.lost == ["room"]


async def test_wait_completes_when_an_item_arrives_or_the_outbox_closes() -> None:
    """A writer waiting on an empty outbox wakes for an item, and for a close."""
    outbox = _outbox(10, Calls())
    waiter = outbox.wait()
    assert not waiter.done()
    outbox.deliver(_event(0))
    await asyncio.wait_for(waiter, 1)
    outbox.take()
    waiter = outbox.wait()
    outbox.close()
    await asyncio.wait_for(waiter, 1)
    assert outbox.wait().done()  # closed: never waits again
