"""Event streams with what a team adds to the app: middleware, exception handlers, mounting.

Every test runs a real uvicorn serving one of the apps in `extending_apps`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from extending_apps import MIDDLEWARE_APPS, POISON, check_plain_routes

from conftest import ServerFactory, TokenFactory
from servers import wait_for
from sse_client import Frame, SSEStream, open_stream


async def publish(http: httpx2.AsyncClient, token: str, channel: str, data: Any) -> str:
    """Publish one event; its id."""
    response = await http.post(
        f"/channels/{channel}/events",
        json={"data": data},
        headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"},
    )
    assert response.status_code == 202, response.text
    event_id: str = response.json()["id"]
    return event_id


async def heartbeat(stream: SSEStream) -> Frame:
    """The next `: ping` frame."""
    async with asyncio.timeout(5):
        while True:
            frame = await stream.next_frame()
            assert frame is not None, "the stream ended before a heartbeat"
            if "ping" in frame.comments:
                return frame


# -- what each middleware does to a stream's head --------------------------------


def gzip_defaults(headers: dict[str, str]) -> None:
    assert "content-encoding" not in headers  # event streams are excluded by default


def gzip_everything(headers: dict[str, str]) -> None:
    assert headers["content-encoding"] == "gzip"  # and decoded chunk by chunk


def http_middleware(headers: dict[str, str]) -> None:
    assert float(headers["x-process-time"]) >= 0


def timing_middleware(headers: dict[str, str]) -> None:
    assert headers["server-timing"].startswith("app;dur=")


def trusted_host(headers: dict[str, str]) -> None:
    assert headers["content-type"].startswith("text/event-stream")


STREAM_HEAD_CHECKS: dict[str, Callable[[dict[str, str]], None]] = {
    "gzip-defaults": gzip_defaults,
    "gzip-event-streams": gzip_everything,
    "http-middleware": http_middleware,
    "pure-asgi-timing": timing_middleware,
    "trusted-host": trusted_host,
}


@pytest.mark.parametrize("name", list(MIDDLEWARE_APPS))
async def test_streams_work_with_middleware(
    name: str, start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """With the middleware added: delivery, heartbeats, resume and shutdown all still work."""
    server = start_server(factory=MIDDLEWARE_APPS[name])
    token = make_token()
    channel = f"room:{name}"
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
        first = await open_stream(server.port, channel, token=token, gzip=True)
        assert first.status == 200
        await check_plain_routes(name, http)
        STREAM_HEAD_CHECKS[name](first.headers)
        await heartbeat(first)
        id1 = await publish(http, token, channel, {"n": 1})
        event = await first.next_event()
        assert (event.id, event.json()) == (id1, {"n": 1})
        await heartbeat(first)  # still beating after an event
        await first.close()
        id2 = await publish(http, token, channel, {"n": 2})
        id3 = await publish(http, token, channel, {"n": 3})
        resumed = await open_stream(server.port, channel, token=token, last_event_id=id1, gzip=True)
        assert [(e.id, e.json()) for e in await resumed.events(2)] == [
            (id2, {"n": 2}),
            (id3, {"n": 3}),
        ]
    server.signal(signal.SIGTERM)
    frames = await resumed.rest(timeout=5)
    assert resumed.ended
    assert any("server shutting down" in f.comments for f in frames)
    assert await asyncio.to_thread(server.wait_exit, 5) in (0, -signal.SIGTERM)
    await resumed.close()
    assert "Traceback" not in server.output()


async def test_trusted_host_refuses_a_stream_for_another_host(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """TrustedHostMiddleware answers 400 to a stream for an unknown host; others still stream."""
    server = start_server(factory="extending_apps:with_trusted_host")
    token = make_token()
    refused = await open_stream(server.port, "room:1", token=token, host="evil.example")
    await refused.close()
    assert (refused.status, refused.body) == (400, b"Invalid host header")
    stream = await open_stream(server.port, "room:1", token=token)
    assert stream.status == 200
    await heartbeat(stream)
    await stream.close()


async def test_a_failing_stream_is_logged_once_and_ends_alone(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """An exception inside one stream ends that stream only, with one log record naming it."""
    server = start_server(factory="extending_apps:with_failing_middleware")
    token = make_token()
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
        failing = await open_stream(server.port, "room:doomed", token=token)
        other = await open_stream(server.port, "room:fine", token=token)
        await heartbeat(failing)
        await heartbeat(other)
        await publish(http, token, "room:doomed", POISON)
        await failing.rest(timeout=5)
        assert failing.ended or failing.cut_off
        event_id = await publish(http, token, "room:fine", "still here")
        assert (await other.next_event()).id == event_id
        again = await open_stream(server.port, "room:doomed", token=token)
        event_id = await publish(http, token, "room:doomed", "back")
        assert (await again.next_event()).id == event_id
        # The app's exception handlers still answer for plain routes.
        handled = await http.get("/fail")
        assert (handled.status_code, handled.json()) == (418, {"detail": "handled"})
    for stream in (failing, other, again):
        await stream.close()
    log = server.output()
    assert log.count("SSE stream failed (sub='alice', channel='room:doomed')") == 1, log
    assert log.count("Traceback") == 1, log
    assert "PoisonedError: this middleware can't send that" in log


async def test_a_stream_under_a_path_prefix(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Mounted at /realtime in another app: the host's lifespan runs, streams work and end on shutdown."""
    server = start_server(factory="extending_apps:mounted", health_path="/realtime/healthz")
    token = make_token()
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
        assert (await http.get("/")).json() == {"started": ["host"]}
        assert (await http.get("/healthz")).status_code == 404
        stream = await open_stream(server.port, "room:1", token=token, prefix="/realtime")
        assert stream.status == 200
        await heartbeat(stream)
        response = await http.post(
            "/realtime/channels/room:1/events",
            json={"data": "hi"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 202
        assert (await stream.next_event()).id == response.json()["id"]
    server.signal(signal.SIGTERM)
    frames = await stream.rest(timeout=5)
    assert stream.ended
    assert any("server shutting down" in f.comments for f in frames)
    assert await asyncio.to_thread(server.wait_exit, 5) in (0, -signal.SIGTERM)
    await stream.close()
    assert "Traceback" not in server.output()


async def test_background_tasks_of_a_stream_route_run_when_the_stream_ends(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """`BackgroundTasks` on a route returning the event stream run once the stream has ended."""
    server = start_server(factory="sse_extending_apps:with_background_task")
    token = make_token()
    stream = await open_stream(server.port, "room:1", token=token, prefix="/audited")
    assert stream.status == 200
    await heartbeat(stream)
    assert "stream of room:1 ended" not in server.output()
    await stream.close()
    ended = lambda: "stream of room:1 ended" in server.output()  # noqa: E731
    await asyncio.to_thread(wait_for, ended, 5, "the background task never ran")
