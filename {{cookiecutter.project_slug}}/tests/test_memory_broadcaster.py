"""What only the in-memory broadcaster does: restarts, memory hygiene, worker warning."""

from __future__ import annotations

import asyncio
import logging

import pytest

from {{ cookiecutter.project_slug }}.broadcast.memory import (
    MemoryBroadcaster,
    warn_if_one_of_several_workers,
)

from conftest import ServerFactory
from servers import wait_for
from test_broadcaster import Recorder


async def test_ids_from_before_a_restart_are_not_recovered() -> None:
    """A new process can't vouch for ids of the previous one: resync."""
    before, after = MemoryBroadcaster(10, 60), MemoryBroadcaster(10, 60)
    event = await before.publish("room", "message", b"1")
    await after.publish("room", "message", b"2")
    assert await after.history_after("room", event.id) is None


async def test_quiet_channels_cost_no_memory() -> None:
    """A channel without subscribers drops its history once HISTORY_TTL has passed."""
    broadcaster = MemoryBroadcaster(10, history_ttl=0.05)
    await broadcaster.start()
    try:
        await broadcaster.publish("room", "message", b"1")
        await broadcaster.publish("busy", "message", b"1")
        await broadcaster.subscribe("busy", Recorder())
        async with asyncio.timeout(5):
            while broadcaster.channel_count() > 1:
                await asyncio.sleep(0.01)
        assert broadcaster.channel_count() == 1  # the subscribed channel stays
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
