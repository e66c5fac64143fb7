"""WebSockets with what a team adds to the app: middleware, exception handlers, mounting.

Every test runs a real uvicorn serving one of the apps in `extending_apps`.
"""

from __future__ import annotations

import asyncio
import signal

import httpx2
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from extending_apps import MIDDLEWARE_APPS, POISON, check_plain_routes

from conftest import ServerFactory, TokenFactory
from servers import ServerProcess, channel_name
from ws_client import (
    Frame,
    expect_close,
    open_ws,
    publish_http,
    recv_frame,
    recv_until,
    subscribe,
)

# Slower than the suite's 0.2 s: a socket whose client doesn't read for 2 x the interval
# is closed as idle, and these tests hold a second socket unread while they wait.
HEARTBEAT = {"HEARTBEAT_INTERVAL": "1"}


async def ping(ws: ClientConnection) -> Frame:
    """The next server `ping` (answered, as a client must)."""
    async with asyncio.timeout(5):
        while (frame := await recv_frame(ws, pings=True))["type"] != "ping":
            pass
    return frame


async def assert_delivery_heartbeat_resume_shutdown(
    server: ServerProcess, token: str, ws: ClientConnection, path: str
) -> None:
    """Live events and pings on `ws`; a new socket at `path` resumes; SIGTERM closes it 1012."""
    channel = channel_name()
    await subscribe(ws, channel)
    id1 = await publish_http(server, token, channel, {"n": 1})
    frame = await recv_frame(ws)
    assert (frame["type"], frame["id"], frame["data"]) == ("message", id1, {"n": 1})
    await ping(ws)
    await ws.close()
    id2 = await publish_http(server, token, channel, {"n": 2})
    id3 = await publish_http(server, token, channel, {"n": 3})
    resumed = await open_ws(server, token, path=path)
    try:
        replayed, subscribed = await subscribe(resumed, channel, last_event_id=id1)
        assert [f["id"] for f in replayed] == [id2, id3]
        assert subscribed["recovered"] is True
        server.signal(signal.SIGTERM)
        code, _ = await expect_close(resumed)
    finally:
        await resumed.close()
    assert code == 1012
    assert await asyncio.to_thread(server.wait_exit, 5) in (0, -signal.SIGTERM)
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("name", list(MIDDLEWARE_APPS))
async def test_websockets_work_with_middleware(
    name: str, start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """With the middleware added: delivery, pings, resume and shutdown all still work."""
    server = start_server(factory=MIDDLEWARE_APPS[name], **HEARTBEAT)
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
        await check_plain_routes(name, http)
    token = make_token()
    ws = await open_ws(server, token)
    await assert_delivery_heartbeat_resume_shutdown(server, token, ws, "/ws")


async def test_trusted_host_refuses_a_handshake_for_another_host(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """TrustedHostMiddleware refuses a WebSocket for an unknown host; others still connect."""
    server = start_server(factory="extending_apps:with_trusted_host", **HEARTBEAT)
    token = make_token()
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(server, token, host="localhost")
    assert refused.value.response.status_code == 400
    ws = await open_ws(server, token)
    try:
        await subscribe(ws, channel_name())
    finally:
        await ws.close()


async def test_a_failing_connection_is_logged_once_and_closes_alone(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """An exception inside one connection closes it 1011, with one log record naming it."""
    server = start_server(factory="extending_apps:with_failing_middleware", **HEARTBEAT)
    token = make_token()
    failing = await open_ws(server, token)
    other = await open_ws(server, token)
    try:
        await subscribe(failing, "room:doomed")
        await subscribe(other, "room:fine")
        await publish_http(server, token, "room:doomed", POISON)
        code, _ = await expect_close(failing)
        assert code == 1011
        event_id = await publish_http(server, token, "room:fine", "still here")
        frames = await recv_until(other, lambda f: f.get("type") == "message")
        assert frames[-1]["id"] == event_id
    finally:
        for ws in (failing, other):
            await ws.close()
    log = server.output()
    assert log.count("WebSocket connection failed (sub='alice', channels=['room:doomed'])") == 1
    assert log.count("Traceback") == 1, log
    assert "PoisonedError: this middleware can't send that" in log


async def test_websockets_under_a_path_prefix(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Mounted at /realtime in another app: `/realtime/ws` works and closes 1012 on shutdown."""
    server = start_server(
        factory="extending_apps:mounted", health_path="/realtime/healthz", **HEARTBEAT
    )
    token = make_token()
    ws = await open_ws(server, token, path="/realtime/ws")
    channel = channel_name()
    await subscribe(ws, channel)
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
        assert (await http.get("/")).json() == {"started": ["host"]}
        response = await http.post(
            f"/realtime/channels/{channel}/events",
            json={"data": "hi"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 202
    frame = await recv_frame(ws)
    assert frame["id"] == response.json()["id"]
    server.signal(signal.SIGTERM)
    try:
        code, _ = await expect_close(ws)
    finally:
        await ws.close()
    assert code == 1012
    assert await asyncio.to_thread(server.wait_exit, 5) in (0, -signal.SIGTERM)
    assert "Traceback" not in server.output()
