"""Both transports on one server: they share `MAX_CONNECTIONS` and every published event."""

from __future__ import annotations

from conftest import ServerFactory, TokenFactory
from sse_client import open_stream
from ws_client import expect_close, metric, open_ws, request


async def test_sse_streams_and_websockets_count_against_one_max_connections(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """With one SSE stream open at `MAX_CONNECTIONS=1`, a WebSocket is closed 1013."""
    server = start_server(MAX_CONNECTIONS="1", HEARTBEAT_INTERVAL="5")
    stream = await open_stream(server.port, "room:1", token=make_token())
    try:
        assert stream.status == 200
        async with await open_ws(server, make_token()) as ws:
            assert await expect_close(ws) == (1013, "too many connections")
        assert metric(server, "realtime_rejected_connections_total") == 1
    finally:
        await stream.close()


async def test_one_publish_reaches_sse_and_websocket_subscribers(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """An event published over WebSocket arrives on an SSE stream with the same id."""
    server = start_server(HEARTBEAT_INTERVAL="5")
    token = make_token()
    stream = await open_stream(server.port, "room:2", token=token)
    try:
        async with await open_ws(server, token) as ws:
            reply = await request(ws, {"type": "publish", "channel": "room:2", "data": {"n": 1}})
            event = await stream.next_event()
            assert (event.id, event.json()) == (reply["id"], {"n": 1})
    finally:
        await stream.close()
