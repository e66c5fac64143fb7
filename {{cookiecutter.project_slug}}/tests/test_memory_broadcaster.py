"""What only the in-memory broadcaster does: restarts, memory hygiene, worker warning."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx2
import jwt
import pytest

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster
from {{ cookiecutter.project_slug }}.broadcast.memory import (
    MemoryBackend,
    warn_if_one_of_several_workers,
)

from conftest import TEST_SECRET, ServerFactory
from servers import wait_for
from test_broadcaster import Recorder


async def test_ids_from_before_a_restart_are_not_recovered() -> None:
    """A new process can't vouch for ids of the previous one: resync."""
    before = Broadcaster(MemoryBackend(10, 60, max_bytes=2**20))
    after = Broadcaster(MemoryBackend(10, 60, max_bytes=2**20))
    event = await before.publish("room", "message", b"1")
    await after.publish("room", "message", b"2")
    assert await after.history_after("room", event.id) is None


async def test_quiet_channels_cost_no_memory() -> None:
    """A channel without subscribers drops its history once HISTORY_TTL has passed."""
    broadcaster = Broadcaster(memory := MemoryBackend(10, history_ttl=0.05, max_bytes=2**20))
    await broadcaster.start()
    try:
        await broadcaster.publish("room", "message", b"1")
        await broadcaster.publish("busy", "message", b"1")
        await broadcaster.subscribe("busy", Recorder())
        async with asyncio.timeout(5):
            while memory.channel_count() > 1:
                await asyncio.sleep(0.01)
        assert memory.channel_count() == 1  # the subscribed channel stays
    finally:
        await broadcaster.stop()


def test_warns_when_run_as_one_of_several_workers(start_server: ServerFactory) -> None:
    """Under `uvicorn --workers 2`, each worker logs a WARNING that events won't cross workers."""
    server = start_server(workers=2)
    wait_for(
        lambda: server.output().count("one of several worker processes") >= 2,
        timeout=20,
        message="no warning from the workers",
    )
    warnings = [line for line in server.output().splitlines() if "several worker" in line]
    assert all(line.startswith("WARNING") for line in warnings), warnings


def test_a_single_process_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    """Run directly (no process manager), the memory broadcaster has nothing to warn about."""
    with caplog.at_level(logging.WARNING):
        warn_if_one_of_several_workers()
    assert not caplog.records


BUDGET = 64 * 1024
PAYLOAD = b'"' + b"x" * 4000 + b'"'


async def test_history_stays_within_history_max_bytes() -> None:
    """One publisher spraying 500 channels x 4 KB: retained history never exceeds the budget."""
    broadcaster = Broadcaster(memory := MemoryBackend(1000, 3600, max_bytes=BUDGET))
    for n in range(500):
        await broadcaster.publish(f"spray:{n}", "message", PAYLOAD)
        assert memory.history_bytes() <= BUDGET
    assert memory.history_bytes() > BUDGET // 2  # the budget is used, not wasted
    assert memory.channel_count() < 500


async def test_the_least_recently_published_history_goes_first_and_resumes_resync() -> None:
    """Past the budget the oldest channel's history goes (resume: resync); recent ones stay whole."""
    broadcaster = Broadcaster(MemoryBackend(1000, 3600, max_bytes=BUDGET))
    old = await broadcaster.publish("old", "message", PAYLOAD)
    kept = await broadcaster.publish("kept", "message", PAYLOAD)
    for _ in range(5):
        await broadcaster.publish("old", "message", PAYLOAD)  # `old` is now the recent one
    spray = [await broadcaster.publish(f"spray:{n}", "message", PAYLOAD) for n in range(9)]
    assert await broadcaster.history_after("kept", kept.id) is None  # dropped: resync
    missed = await broadcaster.history_after("old", old.id)
    assert missed is not None and len(missed) == 5  # published to lately: intact
    assert await broadcaster.history_after(spray[-1].channel, spray[-1].id) == []
    # A new publish to a dropped channel starts afresh; the old id still means resync.
    await broadcaster.publish("kept", "message", b"1")
    assert await broadcaster.history_after("kept", kept.id) is None


async def test_one_channel_over_the_budget_keeps_its_newest_events() -> None:
    """A single channel bigger than the budget trims its own oldest events instead."""
    broadcaster = Broadcaster(memory := MemoryBackend(1000, 3600, max_bytes=BUDGET))
    ids = [(await broadcaster.publish("big", "message", PAYLOAD)).id for _ in range(40)]
    assert memory.history_bytes() <= BUDGET
    assert await broadcaster.history_after("big", ids[0]) is None
    recent = await broadcaster.history_after("big", ids[-5])
    assert recent is not None and [e.id for e in recent] == ids[-4:]


def test_history_max_bytes_is_read_from_the_environment(start_server: ServerFactory) -> None:
    """`HISTORY_MAX_BYTES` bounds a real server: an early channel's resume gets `resync`."""
    server = start_server(HISTORY_MAX_BYTES=str(BUDGET))
    token = jwt.encode(
        {"sub": "spray", "exp": int(time.time()) + 60, "publish": ["*"]},
        TEST_SECRET,
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {token}"}
    with httpx2.Client(base_url=server.url, timeout=5) as http:
        ids = [
            http.post(
                f"/channels/spray:{n}/events", json={"data": "x" * 4000}, headers=headers
            ).json()["id"]
            for n in range(40)
        ]
        assert http.get("/healthz").status_code == 200
    assert len(set(ids)) == 40
    output = server.output()
    assert "to stay within HISTORY_MAX_BYTES=65536" in output


async def test_idempotency_keys_count_against_the_budget() -> None:
    """A flood of unique keys on one channel can't grow memory past HISTORY_MAX_BYTES."""
    broadcaster = Broadcaster(memory := MemoryBackend(1, 3600, max_bytes=BUDGET))
    for n in range(2000):
        await broadcaster.publish("keys", "message", b"1", f"key-{n:06d}-" + "k" * 100)
        assert memory.history_bytes() <= BUDGET
    # The newest keys are still honoured.
    last = await broadcaster.publish("keys", "message", b"1", "key-001999-" + "k" * 100)
    assert last.duplicate
