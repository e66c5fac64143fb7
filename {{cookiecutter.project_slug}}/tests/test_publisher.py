"""Publishing from Python: the same ids, history, fan-out and metrics as `POST .../events`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from fastapi import BackgroundTasks, FastAPI

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.publisher import InvalidEvent, Publisher, PublisherDep
from {{ cookiecutter.project_slug }}.settings import Settings

from conftest import TokenFactory
from servers import channel_name
from test_broadcaster import Recorder


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The service app, lifespan running, with two routes of "your own code"."""
    application = create_app(settings)

    @application.post("/orders/{order_id}/ship")
    async def ship(order_id: str, publisher: PublisherDep) -> dict[str, str]:
        event_id = await publisher.publish(
            f"orders:{order_id}", {"status": "shipped"}, event="order.shipped"
        )
        return {"event_id": event_id}

    @application.post("/orders/{order_id}/ship-later", status_code=202)
    async def ship_later(
        order_id: str, publisher: PublisherDep, tasks: BackgroundTasks
    ) -> dict[str, str]:
        tasks.add_task(publisher.publish, f"orders:{order_id}", {"status": "queued"})
        return {}

    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def published_count(metrics_text: str) -> float:
    match = re.search(r"^realtime_events_published_total (\S+)$", metrics_text, re.M)
    assert match, metrics_text
    return float(match.group(1))


async def test_python_and_http_publishes_share_ids_order_and_history(
    app: FastAPI, http: httpx2.AsyncClient, make_token: TokenFactory
) -> None:
    """Subscribers get both kinds in order; a resume from an HTTP id replays the Python one."""
    ch = channel_name()
    live = Recorder()
    broadcaster = app.state.service.broadcaster
    await broadcaster.subscribe(ch, live)
    headers = {"Authorization": f"Bearer {make_token()}"}
    first = await http.post(f"/channels/{ch}/events", json={"data": 1}, headers=headers)
    assert first.status_code == 202
    python_id = await Publisher.of(app).publish(ch, {"n": 2}, event="chat.new")
    last = await http.post(f"/channels/{ch}/events", json={"data": 3}, headers=headers)
    await live.wait_for(3)
    assert [e.id for e in live.events] == [first.json()["id"], python_id, last.json()["id"]]
    assert [e.name for e in live.events] == ["message", "chat.new", "message"]
    assert live.payloads == [1, {"n": 2}, 3]
    resumed = Recorder()
    await broadcaster.subscribe(ch, resumed, first.json()["id"])
    await resumed.wait_for(2)
    assert [e.id for e in resumed.events] == [python_id, last.json()["id"]]


async def test_the_dependency_and_background_tasks_publish(
    app: FastAPI, http: httpx2.AsyncClient
) -> None:
    """`PublisherDep` in a route, and handed to `BackgroundTasks`, both deliver and count."""
    order = channel_name().removeprefix("room:")
    live = Recorder()
    await app.state.service.broadcaster.subscribe(f"orders:{order}", live)
    before = published_count((await http.get("/metrics")).text)
    shipped = await http.post(f"/orders/{order}/ship")
    assert shipped.status_code == 200
    assert (await http.post(f"/orders/{order}/ship-later")).status_code == 202
    await live.wait_for(2)
    assert live.events[0].id == shipped.json()["event_id"]
    assert live.payloads == [{"status": "shipped"}, {"status": "queued"}]
    assert published_count((await http.get("/metrics")).text) == before + 2


@pytest.mark.parametrize(
    ("channel", "data", "event", "message"),
    [
        ("no spaces", 1, "message", "invalid channel name"),
        ("ok", 1, "bad event!", "invalid event name"),
        ("ok", {1, 2}, "message", "not JSON-serialisable"),
        ("ok", float("nan"), "message", "not JSON-serialisable"),
        ("ok", "x" * 70_000, "message", "larger than MAX_MESSAGE_BYTES"),
    ],
)
async def test_what_http_would_refuse_raises_invalid_event(
    app: FastAPI, channel: str, data: Any, event: str, message: str
) -> None:
    """Bad channel, event name or data: `InvalidEvent` (a `ValueError`), nothing published."""
    live = Recorder()
    await app.state.service.broadcaster.subscribe("ok", live)
    with pytest.raises(InvalidEvent, match=message):
        await Publisher.of(app).publish(channel, data, event=event)
    await Publisher.of(app).publish("ok", "after")
    await live.wait_for(1)
    assert live.payloads == ["after"]


async def test_publishing_from_python_takes_an_idempotency_key(app: FastAPI) -> None:
    """A repeated key returns the first id and publishes nothing; a bad key is `InvalidEvent`."""
    publisher = Publisher.of(app)
    name = channel_name()
    first = await publisher.publish(name, {"n": 1}, idempotency_key="job-7")
    again = await publisher.publish(name, {"n": 1}, idempotency_key="job-7")
    assert again == first
    with pytest.raises(InvalidEvent, match="idempotency key"):
        await publisher.publish(name, 1, idempotency_key="x" * 129)
    assert await publisher.publish(name, {"n": 2}, idempotency_key="job-8") != first
