"""`WS /ws` limits on a real server: frame size, flooding, slow consumers, connection cap."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from conftest import ServerFactory, SharedServerFactory, TokenFactory
from servers import ServerProcess, channel_name, wait_for
from ws_client import (
    expect_close,
    frames_until_close,
    metric,
    open_ws,
    recv_frame,
    recv_until,
    request,
    subscribe,
)

RATE = 20  # the limited server's WS_RATE_LIMIT
MAX_BYTES = 1024  # and its MAX_MESSAGE_BYTES


@pytest.fixture(scope="module")
def limited_server(shared_server: SharedServerFactory) -> ServerProcess:
    """A server with a small frame limit and rate limit; each test uses its own socket."""
    return shared_server(
        MAX_MESSAGE_BYTES=str(MAX_BYTES), WS_RATE_LIMIT=str(RATE), HEARTBEAT_INTERVAL="5"
    )


# -- frame size ------------------------------------------------------------------


async def test_frame_over_max_message_bytes_closes_1009(
    limited_server: ServerProcess, make_token: TokenFactory
) -> None:
    """A frame larger than `MAX_MESSAGE_BYTES` closes the connection with 1009."""
    async with await open_ws(limited_server, make_token()) as ws:
        # Exactly the limit is fine...
        frame = {"type": "publish", "channel": "c", "data": ""}
        padding = MAX_BYTES - len(json.dumps(frame))
        reply = await request(ws, {**frame, "data": "x" * (padding - len(', "ref": "r0000"'))})
        assert reply["type"] == "published"
        # ...one byte more is not (multi-byte characters count as their UTF-8 bytes).
        await ws.send(json.dumps({**frame, "data": "é" * 600}, ensure_ascii=False))
        code, _ = await expect_close(ws)
    assert code == 1009


async def test_uvicorn_ws_max_size_refuses_oversize_frames_with_1009_before_buffering(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """`UVICORN_WS_MAX_SIZE` (as the Dockerfile sets it) makes uvicorn itself refuse with 1009."""
    # The service's own limit is the default 64 KiB: only uvicorn can refuse 2 KB.
    server = start_server(UVICORN_WS_MAX_SIZE="1024", HEARTBEAT_INTERVAL="5")
    async with await open_ws(server, make_token()) as ws:
        await ws.send(json.dumps({"type": "publish", "channel": "c", "data": "x" * 2000}))
        code, _ = await expect_close(ws)
    assert code == 1009


# -- flooding --------------------------------------------------------------------


async def test_flood_is_answered_rate_limited_then_closed_1008(
    limited_server: ServerProcess, make_token: TokenFactory
) -> None:
    """Past the bucket, frames are dropped with `rate_limited`; then 1008 `rate limited`."""
    rate = RATE
    async with await open_ws(limited_server, make_token()) as ws:
        for n in range(10 * rate):
            try:
                await ws.send(json.dumps({"type": "pong", "ref": f"f{n}"}))
            except ConnectionClosed:
                break
        errors, code, reason = await frames_until_close(ws)
    assert (code, reason) == (1008, "rate limited")
    assert errors
    assert {(e["type"], e["code"]) for e in errors} == {("error", "rate_limited")}
    # The bucket held 2 x rate; more than `rate` drops within a second close it, and the
    # frame that tipped it over is answered too.
    assert len(errors) >= rate + 1
    assert errors[0]["ref"] == f"f{2 * rate}"


async def test_client_pacing_itself_under_the_limit_is_never_limited(
    limited_server: ServerProcess, make_token: TokenFactory
) -> None:
    """Frames at 80% of `WS_RATE_LIMIT`, more than a full bucket's worth, are all accepted."""
    rate = RATE
    async with await open_ws(limited_server, make_token()) as ws:
        start = time.monotonic()
        count = 2 * rate + rate // 4
        for n in range(count):
            # An absolute schedule: a late frame doesn't push the later ones back.
            await asyncio.sleep(max(0.0, start + n / (0.8 * rate) - time.monotonic()))
            await ws.send('{"type":"pong"}')
        await ws.send(json.dumps({"type": "unsubscribe", "channel": "c", "ref": "last"}))
        frames = await recv_until(ws, lambda f: f.get("ref") == "last")
    assert [f["type"] for f in frames] == ["unsubscribed"]


# -- slow consumers --------------------------------------------------------------


async def open_non_reading_ws(server: ServerProcess, token: str) -> ClientConnection:
    """A client that reads almost nothing: a tiny socket buffer and frame queue."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    # A short close timeout: closing a socket that nobody reads can't complete cleanly.
    return await open_ws(server, token, sock=sock, max_queue=1, close_timeout=0.2)


async def test_client_that_stops_reading_is_closed_1013_and_delays_nobody(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A non-reading client overflows its outbox and gets 1013; 50 others get every event."""
    server = start_server(OUTBOUND_QUEUE_SIZE="50", HEARTBEAT_INTERVAL="10", WS_RATE_LIMIT="10000")
    channel = channel_name()
    token = make_token()
    readers = [await open_ws(server, token) for _ in range(50)]
    slow = await open_non_reading_ws(server, token)
    publisher = await open_ws(server, token)
    # The kernel buffers a few MB for a socket that isn't read before writes block: the
    # events must outgrow that plus the outbox for the slow client to overflow.
    total, payload = 200, "x" * 32_000
    try:
        for ws in [*readers, slow]:
            await subscribe(ws, channel)

        async def read_all(ws: ClientConnection) -> list[int]:
            got = []
            while len(got) < total:
                frame = await recv_frame(ws, timeout=30)
                got.append(frame["data"][0])
            return got

        reading = asyncio.gather(*(read_all(ws) for ws in readers))
        for n in range(total):
            reply = await request(
                publisher, {"type": "publish", "channel": channel, "data": [n, payload]}
            )
            assert reply["type"] == "published"
        received = await reading
        assert all(got == list(range(total)) for got in received)
        wait_for(
            lambda: metric(server, "realtime_slow_consumer_disconnects_total") == 1,
            5,
            "the slow consumer was not counted",
        )
        # Whatever it finds buffered, the slow client's last word from the server is 1013.
        code, _ = await expect_close(slow, timeout=30)
        assert code == 1013
    finally:
        for ws in [*readers, slow, publisher]:
            await ws.close()


async def test_write_stuck_for_two_intervals_is_detected_and_closed(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A client that answers pings but never reads: its stuck write closes it (1013, counted)."""
    interval = 0.5
    server = start_server(HEARTBEAT_INTERVAL=str(interval), WS_RATE_LIMIT="10000")
    channel = channel_name()
    token = make_token()
    stuck = await open_non_reading_ws(server, token)
    reader = await open_ws(server, token)
    publisher = await open_ws(server, token)
    stop = asyncio.Event()

    async def pong_forever(ws: ClientConnection) -> None:
        # Keeps the idle timeout out of it: only the stuck write may close a connection.
        while not stop.is_set():
            await ws.send('{"type":"pong"}')
            await asyncio.sleep(interval / 4)

    pongers = [asyncio.create_task(pong_forever(ws)) for ws in (stuck, reader, publisher)]
    try:
        await subscribe(stuck, channel)
        await subscribe(reader, channel)
        # Far fewer events than OUTBOUND_QUEUE_SIZE, but more bytes than the kernel buffers.
        total = 100
        for n in range(total):
            frame = {"type": "publish", "channel": channel, "data": [n, "x" * 60_000]}
            await publisher.send(json.dumps(frame))
        got = [(await recv_frame(reader, timeout=10))["data"][0] for _ in range(total)]
        assert got == list(range(total))
        # In a thread: the pongs must go on meanwhile.
        await asyncio.to_thread(
            wait_for,
            lambda: metric(server, "realtime_slow_consumer_disconnects_total") == 1,
            10,
            "the stuck writer was not detected",
        )
        # Its slot is free: only the reader and the publisher are left.
        assert metric(server, "realtime_connections") == 2
    finally:
        stop.set()
        await asyncio.gather(*pongers, return_exceptions=True)
        for ws in (stuck, reader, publisher):
            await ws.close()


# -- connection cap --------------------------------------------------------------


async def test_connections_past_max_connections_are_closed_1013(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Beyond `MAX_CONNECTIONS` a client is accepted then closed 1013; a freed slot is reused."""
    server = start_server(MAX_CONNECTIONS="2", HEARTBEAT_INTERVAL="5")
    first = await open_ws(server, make_token())
    second = await open_ws(server, make_token())
    try:
        for ws in (first, second):
            reply = await request(ws, {"type": "unsubscribe", "channel": "c"})
            assert reply["type"] == "unsubscribed"
        async with await open_ws(server, make_token()) as third:
            assert await expect_close(third) == (1013, "too many connections")
        assert metric(server, "realtime_rejected_connections_total") == 1
        await first.close()
        # The slot is free within 1 s of a clean close.
        deadline = time.monotonic() + 1
        while True:
            async with await open_ws(server, make_token()) as fourth:
                try:
                    reply = await request(fourth, {"type": "unsubscribe", "channel": "c"}, 1)
                except ConnectionClosed:
                    assert time.monotonic() < deadline, "slot not reusable within 1 s"
                    continue
                assert reply["type"] == "unsubscribed"
                break
    finally:
        await first.close()
        await second.close()
