"""A thin test client for `WS /ws` on top of the `websockets` package.

Every wait here has a timeout and waits for a frame or a close, never for time
to pass. Server pings are answered and skipped unless a test asks for them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from servers import ServerProcess

Frame = dict[str, Any]
_refs = itertools.count(1)


def ws_url(
    server: ServerProcess | int,
    token: str | None = None,
    *,
    path: str = "/ws",
    host: str = "127.0.0.1",
) -> str:
    """`ws://<host>:<port><path>` of a server (or a port), with the token in the query when given."""
    port = server.port if isinstance(server, ServerProcess) else server
    url = f"ws://{host}:{port}{path}"
    return f"{url}?token={token}" if token else url


async def open_ws(
    server: ServerProcess | int,
    token: str | None = None,
    *,
    header_token: str | None = None,
    origin: str | None = None,
    path: str = "/ws",
    host: str = "127.0.0.1",
    **options: Any,
) -> ClientConnection:
    """Connect to `path` (token in the query string, or `header_token` as a bearer header).

    `server` is a running server or a port on 127.0.0.1; `host` goes in the URL and the
    `Host` header (the connection is to 127.0.0.1 only when `host` resolves there).
    """
    headers = {"Authorization": f"Bearer {header_token}"} if header_token else None
    settings: dict[str, Any] = {
        "open_timeout": 10,
        "close_timeout": 2,
        "ping_interval": None,  # the protocol's own pings are what is under test
        "proxy": None,  # loopback only, whatever the environment says
        "compression": None,  # so the byte counts of a test are the bytes on the wire
        **options,
    }
    return await connect(
        ws_url(server, token, path=path, host=host),
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        **settings,
    )


async def recv_frame(ws: ClientConnection, timeout: float = 5.0, *, pings: bool = False) -> Frame:
    """The next frame; pings are answered with a pong and skipped unless `pings`."""
    async with asyncio.timeout(timeout):
        while True:
            frame: Frame = json.loads(await ws.recv())
            if frame.get("type") != "ping":
                return frame
            await ws.send('{"type":"pong"}')
            if pings:
                return frame


async def recv_until(
    ws: ClientConnection, predicate: Callable[[Frame], bool], timeout: float = 5.0
) -> list[Frame]:
    """Every non-ping frame up to and including the first one matching `predicate`."""
    frames: list[Frame] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await recv_frame(ws, timeout)
            frames.append(frame)
            if predicate(frame):
                return frames


async def request(ws: ClientConnection, frame: Mapping[str, Any], timeout: float = 5.0) -> Frame:
    """Send `frame` with a fresh `ref` and return the reply carrying that `ref`."""
    ref = f"r{next(_refs)}"
    await ws.send(json.dumps({**frame, "ref": ref}))
    frames = await recv_until(ws, lambda f: f.get("ref") == ref, timeout)
    return frames[-1]


async def subscribe(
    ws: ClientConnection, channel: str, last_event_id: str | None = None
) -> tuple[list[Frame], Frame]:
    """Subscribe; the replayed `message` frames and the `subscribed` frame."""
    frame: Frame = {"type": "subscribe", "channel": channel}
    if last_event_id is not None:
        frame["last_event_id"] = last_event_id
    ref = f"r{next(_refs)}"
    await ws.send(json.dumps({**frame, "ref": ref}))
    frames = await recv_until(ws, lambda f: f.get("ref") == ref)
    assert frames[-1]["type"] == "subscribed", frames[-1]
    return frames[:-1], frames[-1]


async def expect_close(ws: ClientConnection, timeout: float = 5.0) -> tuple[int, str]:
    """Read (and drop) frames until the server closes; its close code and reason."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        if exc.rcvd is None:
            raise AssertionError(f"closed without a close frame: {exc}") from exc
        return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("unreachable")  # pragma: no cover


async def frames_until_close(
    ws: ClientConnection, timeout: float = 5.0
) -> tuple[list[Frame], int, str]:
    """Every non-ping frame until the server closes, then its close code and reason."""
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(await recv_frame(ws, timeout))
    except ConnectionClosed as exc:
        if exc.rcvd is None:
            raise AssertionError(f"closed without a close frame: {exc}") from exc
        return frames, exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("unreachable")  # pragma: no cover


async def publish_http(
    server: ServerProcess, token: str, channel: str, data: Any, event: str | None = None
) -> str:
    """Publish over HTTP; the new event's id."""
    body: dict[str, Any] = {"data": data}
    if event is not None:
        body["event"] = event
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
        response = await http.post(
            f"/channels/{channel}/events",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 202, response.text
    event_id: str = response.json()["id"]
    return event_id


def metric(server: ServerProcess, name: str, transport: str | None = "websocket") -> float:
    """The current value of `name{transport=...}` (or unlabelled `name`) on `/metrics`."""
    text = httpx2.get(f"{server.url}/metrics", timeout=5).text
    # Built by concatenation: doubled braces would read as template syntax here.
    prefix = name + ('{transport="' + transport + '"} ' if transport else " ")
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"{prefix!r} not in /metrics:\n{text}")
