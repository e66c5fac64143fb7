"""`/metrics` of a real `uvicorn --workers 2`: every scrape adds up the whole group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from {{ cookiecutter.project_slug }}.metrics_group import MetricsGroup

from conftest import ServerFactory, TokenFactory
from servers import PACKAGE, ServerProcess, wait_for, worker_pids
{% if cookiecutter.transport == "websocket" %}
from ws_client import open_ws

TRANSPORT = "websocket"
{% else %}
from sse_client import open_stream

TRANSPORT = "sse"
{% endif %}
PUBLISHES = 30


def group_directory(server: ServerProcess) -> Path:
    """Where the workers of `server` meet (see `metrics_group.group_directory`)."""
    return Path(tempfile.gettempdir()) / f"{PACKAGE}-metrics-{server.pid}"


async def worker_samples(socket: Path) -> dict[str, float]:
    """One worker's own samples, asked for directly on its socket: `name{labels}` -> value."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_unix_connection(socket)
        data = await reader.read()
        writer.close()
    values = {}
    for _family, _kind, _help, name, labels, value in json.loads(data):
        rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        values[name + ("{" + rendered + "}" if labels else "")] = value
    return values


def scrape(server: ServerProcess) -> dict[str, float]:
    """One `/metrics` scrape: `name{labels}` -> value."""
    response = httpx2.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    values = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def published_per_worker(server: ServerProcess) -> list[float]:
    """`realtime_events_published_total` of each live worker, read from its own socket."""
    sockets = sorted(group_directory(server).glob("*.sock"))
    return [asyncio.run(worker_samples(s))["realtime_events_published_total"] for s in sockets]


@pytest.fixture
def two_workers(start_server: ServerFactory) -> ServerProcess:
    """A real `uvicorn --workers 2` whose workers both joined the metrics group."""
    # Slow heartbeats: the idle test clients here answer none.
    server = start_server(workers=2, HEARTBEAT_INTERVAL="30")
    wait_for(lambda: len(worker_pids(server.pid)) == 2, 20, "two workers never started")
    wait_for(
        lambda: len(list(group_directory(server).glob("*.sock"))) == 2,
        20,
        "the workers never joined the metrics group",
    )
    return server


def publish_until_both_workers_counted(server: ServerProcess, token: str) -> int:
    """Publish, each on a fresh connection, until both workers took some; the count."""
    sent = 0
    while sent < PUBLISHES or min(published_per_worker(server)) == 0:
        assert sent < 500, "every publish went to the same worker"
        response = httpx2.post(
            f"{server.url}/channels/metrics-test/events",
            json={"data": sent},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert response.status_code == 202, response.text
        sent += 1
    return sent


def test_every_scrape_reports_the_whole_groups_counters(
    two_workers: ServerProcess, make_token: TokenFactory
) -> None:
    """Each scrape sums both workers' counters, whichever worker answers it."""
    sent = publish_until_both_workers_counted(two_workers, make_token())
    assert sum(published_per_worker(two_workers)) == sent
    for _ in range(10):
        values = scrape(two_workers)
        assert values["realtime_events_published_total"] == sent
        assert values["realtime_metrics_workers"] == 2
        assert values["realtime_broadcaster_up"] == 1


@contextlib.asynccontextmanager
async def open_connection(server: ServerProcess, token: str) -> AsyncIterator[None]:
    """Hold one client connection open while the generator is suspended."""
{% if cookiecutter.transport == "websocket" %}
    ws = await open_ws(server, token)
    try:
        yield
    finally:
        await ws.close()
{% else %}
    stream = await open_stream(server.port, "metrics-test", token=token)
    try:
        yield
    finally:
        await stream.close()
{% endif %}


async def test_every_scrape_reports_the_whole_groups_connections(
    two_workers: ServerProcess, make_token: TokenFactory
) -> None:
    """The connections gauge is the group's total, not one worker's."""
    token = make_token()
    gauge = 'realtime_connections{transport="' + TRANSPORT + '"}'
    async with contextlib.AsyncExitStack() as stack:
        opened = 0
        # Which worker accepts a connection is the kernel's choice: open until both hold some.
        while opened < 6 or not await both_workers_hold_connections(two_workers, gauge):
            assert opened < 200, "every connection went to the same worker"
            await stack.enter_async_context(open_connection(two_workers, token))
            opened += 1
        for _ in range(10):
            values = await asyncio.to_thread(scrape, two_workers)
            assert values[gauge] == opened
    await asyncio.to_thread(
        wait_for, lambda: scrape(two_workers)[gauge] == 0, 10, "connections never closed"
    )


async def both_workers_hold_connections(server: ServerProcess, gauge: str) -> bool:
    """True once each live worker counts at least one open connection."""
    sockets = sorted(group_directory(server).glob("*.sock"))
    counts = [(await worker_samples(s))[gauge] for s in sockets]
    return len(counts) == 2 and min(counts) > 0


def test_counters_survive_a_replaced_worker(
    two_workers: ServerProcess, make_token: TokenFactory
) -> None:
    """A worker that stops leaves its counts behind: the group's counters never go down."""
    sent = publish_until_both_workers_counted(two_workers, make_token())
    old = worker_pids(two_workers.pid)
    victim = min(old)
    os.kill(victim, signal.SIGTERM)
    # uvicorn's supervisor starts a new worker in place of the one that left.
    wait_for(
        lambda: len(worker_pids(two_workers.pid) - {victim}) == 2,
        30,
        f"no worker replaced the stopped one:\n{two_workers.output()}",
    )
    wait_for(
        lambda: len(list(group_directory(two_workers).glob("*.sock"))) == 2,
        20,
        "the new worker never joined the metrics group",
    )
    values = scrape(two_workers)
    assert values["realtime_events_published_total"] == sent
    assert values["realtime_metrics_workers"] == 2


async def test_a_lone_process_reports_its_own_metrics(make_token: TokenFactory) -> None:
    """Outside a worker group (tests, a single `uvicorn`), a scrape is this process alone."""
    from {{ cookiecutter.project_slug }}.metrics import Metrics

    metrics = Metrics([TRANSPORT])
    metrics.events_published.inc(3)
    group = MetricsGroup(metrics)
    await group.start()
    text = (await group.render()).decode()
    await group.stop()
    assert "realtime_events_published_total 3.0" in text
    assert "realtime_metrics_workers 1.0" in text


@pytest.fixture
def short_directory() -> Iterator[Path]:
    """A private directory with a path short enough for Unix sockets."""
    directory = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


async def test_a_dead_workers_socket_is_dropped(short_directory: Path) -> None:
    """A socket nobody listens on any more (a killed worker) is skipped and removed."""
    from {{ cookiecutter.project_slug }}.metrics import Metrics

    dead = short_directory / "1.sock"
    server = await asyncio.start_unix_server(lambda r, w: None, path=dead)
    server.close()
    await server.wait_closed()
    assert await asyncio.to_thread(dead.exists), "the stale socket is there to be found"
    group = MetricsGroup(Metrics([TRANSPORT]), directory=lambda: short_directory)
    await group.start()
    text = (await group.render()).decode()
    await group.stop()
    assert "realtime_metrics_workers 1.0" in text
    assert not await asyncio.to_thread(dead.exists)
